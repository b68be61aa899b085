//! The `modelgate` command: parse the CLI, load settings, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use modelgate::settings::log::LogFormat;
use modelgate::settings::model_source::{ModelSource, ServeModel};
use modelgate::settings::Settings;

// mimalloc's per-thread free lists: glibc's malloc and free took about a tenth of a small
// request's CPU time (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "modelgate",
    version,
    about = "Low-latency ONNX model-serving gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the configured endpoints, or one model (--model).
    Serve {
        /// YAML config file (layered over built-in defaults, under MODELGATE__* env vars).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Serve this model as one endpoint, with no config file: models:/NAME@ALIAS or
        /// models:/NAME/VERSION from an MLflow registry, or the path of an MLflow model folder.
        #[arg(long, short)]
        model: Option<String>,
        /// The MLflow tracking server of a models:/ model (else MLFLOW_TRACKING_URI).
        #[arg(long, requires = "model")]
        registry_uri: Option<String>,
        /// The endpoint's name with --model (default: the model's, or the folder's, name).
        #[arg(long, requires = "model")]
        name: Option<String>,
        /// Listen address HOST:PORT (overrides server.listen).
        #[arg(long)]
        listen: Option<String>,
        /// Log lines as text or as one JSON object each (overrides log.format).
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Validate a config file and print the effective settings.
    CheckConfig {
        /// YAML config file.
        #[arg(long, short, required_unless_present = "file")]
        config: Option<PathBuf>,
        /// The config file, as earlier releases took it (use --config).
        #[arg(hide = true, conflicts_with = "config")]
        file: Option<PathBuf>,
    },
    /// Write a model folder's drift baseline (baseline.json) from its training data.
    Baseline {
        /// The MLflow model folder (MLmodel and its ONNX file); baseline.json goes beside them.
        #[arg(long, short)]
        model: PathBuf,
        /// The training rows: a .csv file with a header row, or a .parquet file. Columns that
        /// are not inputs of the model (ids, the label) are left out.
        #[arg(long, short)]
        data: PathBuf,
        /// Write here instead of MODEL/baseline.json.
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// The column of true labels (0/1 or true/false): the model's quality on the data
        /// (accuracy, F1, AUC, ...) is measured and kept in the file.
        #[arg(long)]
        label: Option<String>,
    },
    /// Print the OpenAPI document of the HTTP API (docs/openapi.json).
    Openapi,
    /// Online feature tables.
    Features {
        #[command(subcommand)]
        command: FeaturesCommand,
    },
}

#[derive(Subcommand)]
enum FeaturesCommand {
    /// Bulk-load the snapshot files of `features.tables` into the Redis of `features.redis`.
    Load {
        /// YAML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// mimalloc's `mi_option_allow_thp` and `mi_option_arena_max_object_size` (positions 43 and 45
/// of its v3 option list, which libmimalloc-sys does not name; the `MIMALLOC_ALLOW_THP` and
/// `MIMALLOC_ARENA_MAX_OBJECT_SIZE` variables set them too, the latter in bytes unless it has a
/// `KiB`/`MiB`/`GiB` suffix, while the setter here takes KiB).
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 43;
const MI_OPTION_ARENA_MAX_OBJECT_SIZE: libmimalloc_sys::mi_option_t = 45;
// The positions above hold for the option list of this length: a mimalloc whose list changed
// fails the build here rather than setting some other option.
const _: () = assert!(libmimalloc_sys::_mi_option_last == 47);

/// Objects whose page, header included, is over this many KiB (so a 4 MiB buffer too) are
/// mapped on their own and unmapped when freed, not kept in the arena. 4 MiB is the size of
/// mimalloc's large pages (objects of 64-512 KiB): any lower and each of those pages would be
/// mapped and unmapped on its own too.
const ARENA_MAX_OBJECT_KIB: std::ffi::c_long = 4096;

/// Two settings of the allocator, each a default that mimalloc's own variable (read at its
/// start, in any case) overrides.
///
/// Large objects go back to the OS when freed: freed arena memory is kept for mimalloc's purge
/// delay (`purge_delay` 1 s times `arena_purge_mult` 1), and with every object in the arena a
/// burst of large bodies (the JSON-bomb test's) reached 634 MiB of peak RSS against the test's
/// 512 MiB bound (about 380 with this). The small and medium pages that the request path and
/// the inference log turn over stay in the arena for that second: returning them at once cost
/// a logged run 25,000 page faults a second, and keeping them gained it 10-20 % in req/s
/// (docs/benchmarks.md).
///
/// No transparent huge pages: mimalloc asks for them on its arenas, and every page the
/// inference log and the wait for labels free (they hold a few seconds of traffic) that went
/// back to the OS came back as a zeroed 2 MiB fault, often on a request's thread: 8-13 % of a
/// saturated core in `clear_page_erms`, and a logged closed-loop p99 of 30-131 ms against
/// 8.5-9.0 without (docs/benchmarks.md).
fn tune_allocator() {
    // SAFETY: option setters of the allocator, called before any other thread starts.
    let huge_pages = unsafe {
        libmimalloc_sys::mi_option_set_default(
            MI_OPTION_ARENA_MAX_OBJECT_SIZE,
            ARENA_MAX_OBJECT_KIB,
        );
        libmimalloc_sys::mi_option_set_default(MI_OPTION_ALLOW_THP, 0);
        libmimalloc_sys::mi_option_is_enabled(MI_OPTION_ALLOW_THP)
    };
    #[cfg(target_os = "linux")]
    if !huge_pages {
        // The arena mimalloc reserved before `main` was already advised for huge pages; this
        // turns them off for the whole process, as mimalloc does when its variable is set.
        let off: libc::c_ulong = 1;
        // SAFETY: a prctl on this process with integer arguments.
        if unsafe {
            libc::prctl(
                libc::PR_SET_THP_DISABLE,
                off,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        } != 0
        {
            // Logging is not set up yet; the gateway runs either way.
            eprintln!(
                "modelgate: transparent huge pages stay as the system has them: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = huge_pages;
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        init_logging(LogFormat::Text, false);
    }
    match cli.command {
        Command::Openapi => {
            let doc = modelgate::http::openapi::document();
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Command::CheckConfig { config, file } => {
            let file = config.or(file).unwrap_or_default();
            check_config(&file)
        }
        Command::Baseline {
            model,
            data,
            out,
            label,
        } => {
            let job = modelgate::cli::baseline::BaselineJob {
                model: &model,
                data: &data,
                out: out.as_deref(),
                label: label.as_deref(),
                engine: Default::default(),
            };
            match modelgate::cli::baseline::write_baseline(&job) {
                Ok(w) => {
                    println!(
                        "{}: {} rows; features {}; outputs {}",
                        w.path.display(),
                        w.rows,
                        w.features.join(", "),
                        w.outputs.join(", ")
                    );
                    if let Some(q) = &w.quality {
                        let figure = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
                        println!(
                            "quality on these rows: {} labels, accuracy {}, F1 {}, AUC {}",
                            q.labels,
                            figure(q.accuracy),
                            figure(q.f1),
                            figure(q.auc)
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Features {
            command: FeaturesCommand::Load { config },
        } => {
            let loaded = Settings::load(Some(&config), None)
                .map_err(|e| e.to_string())
                .and_then(|s| {
                    modelgate::features::redis_store::load_snapshots(
                        &s.features.redis,
                        &s.features.tables,
                    )
                    .map_err(|e| e.to_string())
                });
            match loaded {
                Ok(tables) => {
                    for (table, rows) in tables {
                        println!("{table}: {rows} rows loaded");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Serve {
            config,
            model,
            registry_uri,
            name,
            listen,
            log_format,
        } => {
            let model = match model.as_deref().map(ModelSource::parse).transpose() {
                Ok(source) => source.map(|source| ServeModel {
                    source,
                    registry_uri,
                    endpoint: name,
                }),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let loaded =
                Settings::load_serving(config.as_deref(), listen.as_deref(), model.as_ref());
            let settings = match loaded {
                Ok(s) => s,
                Err(e) => {
                    init_logging(log_format.unwrap_or_default(), false);
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            // Settings log nothing: the format can come from them.
            init_logging(
                log_format.unwrap_or(settings.log.format),
                settings.log.access,
            );
            let system = actix_web::rt::System::new();
            let result = system.block_on(async move {
                // Taken over before anything is bound or printed: a SIGTERM from then on
                // drains and exits 0, however soon it comes.
                let shutdown = shutdown_signal();
                let serving = modelgate::start(settings).await?.serve()?;
                println!(
                    "modelgate live on {}://{} (/livez); loading models",
                    serving.scheme(),
                    serving.addr
                );
                modelgate::serve_loaded(serving, shutdown, |serving| {
                    if let Some(grpc) = serving.grpc_addr {
                        println!("modelgate gRPC listening on {grpc}");
                    }
                    if let Some(admin) = serving.admin_addr {
                        println!(
                            "modelgate admin API listening on {}://{admin}",
                            serving.scheme()
                        );
                    }
                    // Printed once every model serves: tests and scripts read the bound
                    // address from this line (the admin listener's, when there is one, first).
                    println!(
                        "modelgate listening on {}://{}",
                        serving.scheme(),
                        serving.addr
                    );
                    // The page is a manage route: on the admin listener when there is one.
                    let page = serving.admin_addr.unwrap_or(serving.addr);
                    println!("status page: {}://{page}/", serving.scheme());
                    if let Some(curl) = serving.example_curl() {
                        println!("try it:\n  {curl}");
                    }
                })
                .await
            });
            let code = match result {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e}");
                    1
                }
            };
            // Out now, without dropping the runtime: its drop waits for every blocking task,
            // and a model download the shutdown interrupted could hold it for minutes. What
            // must outlive the serving (the inference log, spans) is flushed already.
            std::process::exit(code)
        }
    }
}

/// `check-config`: the effective settings of `file`, secrets redacted, or why it is invalid.
fn check_config(file: &std::path::Path) -> ExitCode {
    match Settings::load(Some(file), None) {
        Ok(s) => {
            // Secrets never reach the terminal (nor CI logs that keep it).
            println!(
                "{}",
                serde_yaml::to_string(&s.redacted()).unwrap_or_default()
            );
            eprintln!("{}: configuration is valid", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// Log lines to stderr, as text or JSON. Dependencies (Delta commits, HTTP clients) at warn:
/// their INFO lines wrote megabytes a minute under load. RUST_LOG still sets anything.
/// With `access`, the access log's lines pass whatever the filter says.
fn init_logging(format: LogFormat, access: bool) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "warn,modelgate=info".into());
    if access {
        if let Ok(d) = "modelgate::access=info".parse() {
            filter = filter.add_directive(d);
        }
    }
    // Colours only on a terminal: a file or a log pipeline gets plain text.
    let lines = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(modelgate::progress::log_writer);
    match format {
        LogFormat::Text => lines.init(),
        LogFormat::Json => lines
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// Resolves on SIGTERM or Ctrl-C. SIGTERM's handler is installed when this is called, not
/// when the future is first polled: a signal in between is kept for it, not fatal.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        #[cfg(unix)]
        if let Some(mut term) = term {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
