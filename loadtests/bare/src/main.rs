//! The limit beside the gateway: a bare actix-web server that answers every POST, to any path,
//! with one fixed small JSON body. No routing table, no logging, no middleware; the request
//! body is read (as the gateway reads it) and dropped. `loadtests/limit.sh` and
//! `loadtests/pin.sh` load it with the same requests as the gateway, so the gap between the
//! two is what the gateway itself costs. With `--infer` it also runs a model for every request
//! (see `infer`): the limit of HTTP and inference together, which `loadtests/pin.sh` measures
//! beside it.
//!
//!   modelgate-bare [--listen HOST:PORT] [--workers N] [--infer MLFLOW_MODEL_DIR [--infer-rows N]]
//!
//! `--listen` defaults to 127.0.0.1:0 (a free port); the bound address is printed on stdout as
//! `bare listening on http://ADDR`, the way the gateway prints its own. `--workers` defaults to
//! the number of cores the process may use.

mod infer;

use std::net::TcpListener;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::http::{header, Method};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

/// What every POST gets: the shape of the gateway's answer to a one-row request.
const ANSWER: &str = r#"{"predictions":[{"label":0,"probability":0.05}]}"#;

/// One HTTP worker's part of `--infer`: the model, and the worker's session in it.
struct Inference {
    model: Arc<infer::Model>,
    worker: usize,
}

/// The request body is taken (so it is read off the socket, as the gateway reads it) and dropped.
/// With `--infer`, the model runs once before the answer.
async fn answer(req: HttpRequest, _body: web::Bytes) -> HttpResponse {
    if req.method() != Method::POST {
        return HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, "POST"))
            .finish();
    }
    // Looked up, not extracted: an extractor that finds nothing costs an error value a request.
    if let Some(inference) = req.app_data::<Inference>() {
        if let Err(e) = inference.model.run(inference.worker) {
            return HttpResponse::InternalServerError().body(e);
        }
    }
    HttpResponse::Ok()
        .content_type(header::ContentType::json())
        .body(ANSWER)
}

struct Args {
    listen: String,
    workers: usize,
    infer: Option<PathBuf>,
    infer_rows: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:0".into(),
        workers: std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        infer: None,
        infer_rows: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (flag, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "--listen" => args.listen = value()?,
            "--workers" => {
                let v = value()?;
                args.workers = match v.parse() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("--workers: '{v}' is not a positive number")),
                };
            }
            "--infer" => args.infer = Some(value()?.into()),
            "--infer-rows" => {
                let v = value()?;
                args.infer_rows = match v.parse() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("--infer-rows: '{v}' is not a positive number")),
                };
            }
            "-h" | "--help" => {
                println!(
                    "usage: modelgate-bare [--listen HOST:PORT] [--workers N] [--infer MLFLOW_MODEL_DIR [--infer-rows N]]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(args)
}

#[actix_web::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("modelgate-bare: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(&args.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("modelgate-bare: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("modelgate-bare: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Loaded (and run once) before listening, so that a model that cannot run is an error at
    // start; each worker takes a session of its own.
    let model = match &args.infer {
        None => None,
        Some(dir) => match open_model(dir, args.workers, args.infer_rows) {
            Ok(m) => Some(Arc::new(m)),
            Err(e) => {
                eprintln!("modelgate-bare: --infer {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
        },
    };
    let workers = args.workers;
    let next = Arc::new(AtomicUsize::new(0));
    let server = match HttpServer::new(move || {
        let app = App::new().default_service(web::to(answer));
        match &model {
            None => app,
            Some(model) => app.app_data(Inference {
                model: model.clone(),
                worker: next.fetch_add(1, Ordering::Relaxed) % workers,
            }),
        }
    })
    .workers(args.workers)
    .listen(listener)
    {
        Ok(s) => s.run(),
        Err(e) => {
            eprintln!("modelgate-bare: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Scripts read the bound address from this line (std's stdout flushes at each newline).
    println!("bare listening on http://{addr}");
    match server.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("modelgate-bare: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Loads `--infer`'s model and runs it once, so that a model that cannot run fails at start.
fn open_model(dir: &Path, workers: usize, rows: usize) -> Result<infer::Model, String> {
    let model = infer::Model::open(dir, workers, rows)?;
    model.run(0)?;
    Ok(model)
}
