//! The one route table: each route's method, path, class (its auth scope and listener), its
//! documentation and its handler. It drives actix's routing ([`configure`]), the auth scopes
//! and listener split ([`class_of`]) and the OpenAPI document ([`super::openapi`]).

use actix_web::web;

use super::{
    admin, endpoint_info, feature_push, governance, handlers, kserve_v1, labels, monitoring,
    promotion, status_page, v2_handlers, webhook,
};

/// What a route is, for its scope and for the listener that serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// Liveness, readiness, version: every listener.
    Health,
    /// `/metrics`: every listener.
    Metrics,
    /// MLflow webhooks (signed with their own secret): the main listener.
    Webhook,
    /// Scoring and model metadata: the main listener.
    Query,
    /// The control plane, labels, feature pushes: the admin listener when there is one.
    Manage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    /// The lower-case name OpenAPI keys operations by.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Post => "post",
            Self::Put => "put",
            Self::Patch => "patch",
            Self::Delete => "delete",
        }
    }

    fn route(self) -> actix_web::Route {
        match self {
            Self::Get => web::get(),
            Self::Post => web::post(),
            Self::Put => web::put(),
            Self::Patch => web::patch(),
            Self::Delete => web::delete(),
        }
    }
}

/// One route of the HTTP API.
pub struct Route {
    pub method: Method,
    /// actix's pattern, `{name}` for a path segment (OpenAPI's syntax too).
    pub path: &'static str,
    pub class: RouteClass,
    pub summary: &'static str,
    /// The request body's schema (in the OpenAPI document's `components.schemas`), if any.
    pub body: Option<&'static str>,
    /// The answer's schema.
    pub answer: &'static str,
    /// Attaches the handler to the route.
    pub handler: fn(actix_web::Route) -> actix_web::Route,
}

use Method::{Delete, Get, Patch, Post, Put};
use RouteClass::{Health, Manage, Metrics, Query, Webhook};

macro_rules! route {
    ($method:expr, $path:literal, $class:expr, $summary:literal, $body:expr, $answer:literal, $handler:path) => {
        Route {
            method: $method,
            path: $path,
            class: $class,
            summary: $summary,
            body: $body,
            answer: $answer,
            handler: |r| r.to($handler),
        }
    };
}

/// Every route the app serves. Scoring first: [`class_of`] scans in this order.
pub const ROUTES: &[Route] = &[
    route!(Post, "/serving-endpoints/{endpoint}/invocations", Query, "Score rows (MLflow scoring protocol: dataframe_split, dataframe_records, instances, inputs, or CSV)", Some("ScoringRequest"), "Predictions", handlers::invocations),
    route!(Post, "/serving-endpoints/{endpoint}/served-models/{served}/invocations", Query, "Score rows on one served entity, without routing", Some("ScoringRequest"), "Predictions", handlers::pinned_invocations),
    route!(Post, "/invocations", Query, "Score rows on the only endpoint (MLflow's scoring server path)", Some("ScoringRequest"), "Predictions", handlers::sole_invocations),
    route!(Get, "/ping", Health, "Liveness, as MLflow's scoring server answers it", None, "Empty", handlers::ping),
    route!(Get, "/health", Health, "Liveness, as MLflow's scoring server answers it", None, "Empty", handlers::ping),
    route!(Get, "/version", Health, "The gateway's version", None, "Text", handlers::version),
    route!(Get, "/livez", Health, "The process is up", None, "Text", handlers::livez),
    route!(Get, "/readyz", Health, "Every config-file endpoint serves a loaded, validated model", None, "Object", handlers::readyz),
    route!(Get, "/metrics", Metrics, "Prometheus text exposition", None, "Text", handlers::metrics),
    route!(Get, "/", Manage, "Status page: endpoints, versions, traffic, live rates and latency, drift, quality, swaps (HTML, reloads itself)", None, "Html", status_page::page),
    route!(Get, "/api/2.0/serving-endpoints", Manage, "List endpoints (Databricks serving REST)", None, "EndpointList", admin::list),
    route!(Post, "/api/2.0/serving-endpoints", Manage, "Create an endpoint", Some("CreateEndpoint"), "Endpoint", admin::create),
    route!(Get, "/api/2.0/serving-endpoints/{name}", Manage, "An endpoint, its config, state and pending config", None, "Endpoint", admin::get_endpoint),
    route!(Delete, "/api/2.0/serving-endpoints/{name}", Manage, "Delete an endpoint", None, "Object", admin::delete),
    route!(Put, "/api/2.0/serving-endpoints/{name}/config", Manage, "Update an endpoint's config (answers at once; the update runs in the background)", Some("EndpointConfig"), "Endpoint", admin::update_config),
    route!(Post, "/api/2.0/serving-endpoints/{name}/reload", Manage, "Follow the registry now (aliases, versions)", None, "Object", admin::reload),
    route!(Post, "/api/2.0/serving-endpoints/{name}/rollback", Manage, "Serve the version served before the last swap", None, "Object", admin::rollback),
    route!(Patch, "/api/2.0/serving-endpoints/{name}/tags", Manage, "Add and delete an endpoint's tags", Some("TagsPatch"), "Tags", governance::patch_tags),
    route!(Put, "/api/2.0/serving-endpoints/{name}/rate-limits", Manage, "Replace an endpoint's rate limits (Databricks' legacy call)", Some("RateLimits"), "RateLimits", governance::put_rate_limits),
    route!(Put, "/api/2.0/serving-endpoints/{name}/ai-gateway", Manage, "Inference tables, rate limits and usage tracking in the AI gateway's shape", Some("AiGateway"), "AiGateway", governance::put_ai_gateway),
    route!(Get, "/api/2.0/serving-endpoints/{name}/metrics", Manage, "This endpoint's metrics (Prometheus text)", None, "Text", endpoint_info::export_metrics),
    route!(Get, "/api/2.0/serving-endpoints/{name}/openapi", Manage, "How to query this endpoint (OpenAPI, with its model's request columns)", None, "Object", endpoint_info::query_openapi),
    route!(Get, "/api/2.0/serving-endpoints/{name}/served-models/{served}/logs", Manage, "A served entity's recent load and swap lines", None, "Logs", endpoint_info::served_logs),
    route!(Get, "/api/2.0/serving-endpoints/{name}/served-models/{served}/build-logs", Manage, "The lines of a served entity's latest load", None, "Logs", endpoint_info::build_logs),
    route!(Get, "/api/2.0/permissions/serving-endpoints/{serving_endpoint_id}", Manage, "Who may view, query and manage an endpoint (token scopes and direct grants)", None, "Object", governance::get_permissions),
    route!(Put, "/api/2.0/permissions/serving-endpoints/{serving_endpoint_id}", Manage, "Replace an endpoint's direct grants", Some("AccessControlList"), "Object", governance::set_permissions),
    route!(Patch, "/api/2.0/permissions/serving-endpoints/{serving_endpoint_id}", Manage, "Add or change direct grants", Some("AccessControlList"), "Object", governance::update_permissions),
    route!(Get, "/api/2.0/permissions/serving-endpoints/{serving_endpoint_id}/permissionLevels", Manage, "The permission levels of an endpoint", None, "Object", governance::permission_levels),
    route!(Get, "/.well-known/databricks-config", Health, "Host metadata databricks-sdk asks for (no OIDC here)", None, "Object", endpoint_info::host_metadata),
    route!(Post, "/api/2.0/serving-endpoints/{name}/labels", Manage, "Ground truth for logged or waiting predictions", Some("Labels"), "LabelsAccepted", labels::post_labels),
    route!(Get, "/api/2.0/serving-endpoints/{name}/promotion", Manage, "Where the endpoint's promotion stands: state, figures of champion and challenger, rules, decisions", None, "Object", promotion::get_promotion),
    route!(Put, "/api/2.0/serving-endpoints/{name}/promotion", Manage, "Set the endpoint's promotion rules (champion, challenger, metric, thresholds, action, rollback guard)", Some("Object"), "Object", promotion::put_promotion),
    route!(Delete, "/api/2.0/serving-endpoints/{name}/promotion", Manage, "Remove the endpoint's promotion rules", None, "Object", promotion::delete_promotion),
    route!(Get, "/api/2.0/serving-endpoints/{name}/monitoring", Manage, "Drift per served entity and feature, flags and quality", None, "Object", monitoring::get_monitoring),
    route!(Post, "/api/2.0/feature-tables/{table}/rows", Manage, "Push rows into an embedded online table", Some("Object"), "Object", feature_push::push_rows),
    route!(Post, "/api/2.0/webhooks/mlflow", Webhook, "MLflow model-registry webhook (HMAC-signed)", Some("Object"), "Object", webhook::mlflow_webhook),
    route!(Post, "/v1/models/{model}:predict", Query, "KServe V1 prediction (instances or inputs)", Some("ScoringRequest"), "Predictions", kserve_v1::predict),
    route!(Get, "/v1/models/{model}", Query, "KServe V1 model readiness", None, "Object", kserve_v1::model),
    route!(Get, "/v1/models", Query, "KServe V1 model list", None, "Object", kserve_v1::models),
    route!(Get, "/v2", Query, "Open Inference Protocol V2: server metadata", None, "Object", v2_handlers::server_metadata),
    route!(Get, "/v2/health/live", Health, "V2 liveness", None, "Empty", v2_handlers::live),
    route!(Get, "/v2/health/ready", Health, "V2 readiness", None, "Empty", v2_handlers::ready),
    route!(Get, "/v2/models/{model}", Query, "V2 model metadata", None, "Object", v2_handlers::model_metadata),
    route!(Get, "/v2/models/{model}/ready", Query, "V2 model readiness", None, "Empty", v2_handlers::model_ready),
    route!(Post, "/v2/models/{model}/infer", Query, "V2 inference", Some("V2InferRequest"), "V2InferResponse", v2_handlers::infer),
    route!(Get, "/v2/models/{model}/versions/{version}", Query, "V2 model metadata of a version", None, "Object", v2_handlers::model_metadata),
    route!(Get, "/v2/models/{model}/versions/{version}/ready", Query, "V2 readiness of a version", None, "Empty", v2_handlers::model_ready),
    route!(Post, "/v2/models/{model}/versions/{version}/infer", Query, "V2 inference on a version", Some("V2InferRequest"), "V2InferResponse", v2_handlers::infer),
];

/// Registers every route, and the JSON 404 for the rest.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for r in ROUTES {
        cfg.route(r.path, (r.handler)(r.method.route()));
    }
    cfg.default_service(web::to(handlers::not_found));
}

/// A scoring call found by hand, in front of actix's router: the router boxes each
/// handler's future (for scoring, a state machine of several KB, allocated, copied and freed
/// on every request) and matches `{name}` patterns with a regex. The paths are those of the
/// scoring [`ROUTES`] (a test holds the two to each other); a segment with a `%` escape is
/// left to the router, which decodes it.
#[derive(Debug, PartialEq, Eq)]
pub enum ScoringPath {
    /// `/serving-endpoints/{endpoint}/invocations`
    Endpoint(String),
    /// `/serving-endpoints/{endpoint}/served-models/{served}/invocations`
    Pinned(String, String),
    /// `/invocations`
    Sole,
    /// `/v2/models/{model}/infer` and `/v2/models/{model}/versions/{version}/infer`
    V2Infer(String, Option<String>),
    /// `/v1/models/{model}:predict`
    KserveV1Predict(String),
}

/// The scoring call a `POST` to `path` makes, if it is one.
pub fn scoring_path(method: &actix_web::http::Method, path: &str) -> Option<ScoringPath> {
    if method != actix_web::http::Method::POST {
        return None;
    }
    if path == "/invocations" {
        return Some(ScoringPath::Sole);
    }
    let plain = |s: &str| !s.is_empty() && !s.contains('%');
    if let Some(rest) = path.strip_prefix("/v1/models/") {
        let model = rest.strip_suffix(":predict").filter(|m| plain(m))?;
        return (!model.contains('/')).then(|| ScoringPath::KserveV1Predict(model.to_owned()));
    }
    let (v2, rest) = match path.strip_prefix("/v2/models/") {
        Some(rest) => (true, rest),
        None => (false, path.strip_prefix("/serving-endpoints/")?),
    };
    // At most four segments, in place (no allocation on the request path).
    let mut segments = [""; 4];
    let mut count = 0;
    for segment in rest.split('/') {
        if count == segments.len() || !plain(segment) {
            return None;
        }
        segments[count] = segment;
        count += 1;
    }
    let own = |s: &str| s.to_owned();
    match (v2, &segments[..count]) {
        (false, [endpoint, "invocations"]) => Some(ScoringPath::Endpoint(own(endpoint))),
        (false, [endpoint, "served-models", served, "invocations"]) => {
            Some(ScoringPath::Pinned(own(endpoint), own(served)))
        }
        (true, [model, "infer"]) => Some(ScoringPath::V2Infer(own(model), None)),
        (true, [model, "versions", version, "infer"]) => {
            Some(ScoringPath::V2Infer(own(model), Some(own(version))))
        }
        _ => None,
    }
}

/// The class of the route a path falls on, whatever the method (all routes of one path share
/// a class). A path no route serves is `Manage`: refused without a manage token before it is
/// found missing, so unknown paths reveal nothing to strangers.
pub fn class_of(path: &str) -> RouteClass {
    route_of(path).map_or(RouteClass::Manage, |r| r.class)
}

/// The route a path falls on, whatever the method; none for a path no route serves.
pub fn route_of(path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| matches(r.path, path))
}

/// The endpoint a path names (its `{endpoint}`, `{name}`, `{model}` or
/// `{serving_endpoint_id}` segment), for grants on one endpoint; none for other paths.
pub fn endpoint_of(path: &str) -> Option<&str> {
    let route = route_of(path)?;
    route
        .path
        .split('/')
        .zip(path.split('/'))
        .find_map(|(want, got)| {
            let (placeholder, suffix) = split_placeholder(want)?;
            matches!(
                placeholder,
                "{endpoint}" | "{name}" | "{model}" | "{serving_endpoint_id}"
            )
            .then(|| got.strip_suffix(suffix))
            .flatten()
        })
}

/// A pattern segment's placeholder (`{model}`) and the literal after it (`:predict`, or "").
fn split_placeholder(segment: &str) -> Option<(&str, &str)> {
    let end = segment.find('}')?;
    segment.starts_with('{').then(|| segment.split_at(end + 1))
}

/// Whether `path` fits `pattern`, a `{name}` standing for one non-empty segment (or its start,
/// before a literal such as `:predict`).
fn matches(pattern: &str, path: &str) -> bool {
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) => {
                let fits = match split_placeholder(w) {
                    // `{model}:predict`: a non-empty name, then the literal.
                    Some((_, suffix)) => g.len() > suffix.len() && g.ends_with(suffix),
                    None => w == g,
                };
                if !fits {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fall_on_their_routes_class() {
        assert_eq!(class_of("/serving-endpoints/tx/invocations"), Query);
        assert_eq!(
            class_of("/serving-endpoints/tx/served-models/a/invocations"),
            Query
        );
        assert_eq!(class_of("/v2/models/tx/versions/3/infer"), Query);
        assert_eq!(class_of("/v2/models/tx"), Query);
        assert_eq!(class_of("/v2/health/ready"), Health);
        assert_eq!(class_of("/metrics"), Metrics);
        assert_eq!(class_of("/api/2.0/webhooks/mlflow"), Webhook);
        assert_eq!(class_of("/api/2.0/serving-endpoints/tx/labels"), Manage);
        // Not routes: an empty segment, a longer or shorter path, an unknown one.
        assert_eq!(class_of("/serving-endpoints//invocations"), Manage);
        assert_eq!(class_of("/serving-endpoints/tx/invocations/x"), Manage);
        assert_eq!(class_of("/serving-endpoints/tx"), Manage);
        assert_eq!(class_of("/admin"), Manage);
    }

    #[test]
    fn scoring_paths_are_found_as_the_router_finds_them() {
        use actix_web::http::Method as M;
        use ScoringPath::*;
        let own = |s: &str| s.to_owned();
        let cases = [
            ("/serving-endpoints/tx/invocations", Endpoint(own("tx"))),
            (
                "/serving-endpoints/tx/served-models/a/invocations",
                Pinned(own("tx"), own("a")),
            ),
            ("/invocations", Sole),
            ("/v2/models/tx/infer", V2Infer(own("tx"), None)),
            (
                "/v2/models/tx/versions/3/infer",
                V2Infer(own("tx"), Some(own("3"))),
            ),
            ("/v1/models/tx:predict", KserveV1Predict(own("tx"))),
        ];
        // Every scoring route of the table is found, and only those.
        let mut found = std::collections::HashSet::new();
        for (path, call) in cases {
            assert_eq!(scoring_path(&M::POST, path), Some(call), "{path}");
            let route = route_of(path).unwrap();
            assert_eq!((route.method, route.class), (Post, Query), "{path}");
            found.insert(route.path);
        }
        let scoring: std::collections::HashSet<_> = ROUTES
            .iter()
            .filter(|r| r.method == Post && r.class == Query)
            .map(|r| r.path)
            .collect();
        assert_eq!(found, scoring);
        // And as actix's router reads the table's patterns.
        for (path, call) in [
            ("/serving-endpoints/tx/invocations", vec!["tx"]),
            (
                "/serving-endpoints/tx/served-models/a/invocations",
                vec!["tx", "a"],
            ),
            ("/v2/models/tx/versions/3/infer", vec!["tx", "3"]),
            ("/v1/models/tx:predict:predict", vec!["tx:predict"]),
            ("/v1/models/tx:predict", vec!["tx"]),
        ] {
            let routed = ROUTES
                .iter()
                .filter(|r| r.method == Post)
                .find_map(|r| {
                    let mut at = actix_web::dev::Path::new(path);
                    actix_web::dev::ResourceDef::new(r.path)
                        .capture_match_info(&mut at)
                        .then(|| at.iter().map(|(_, v)| v.to_owned()).collect::<Vec<_>>())
                })
                .unwrap();
            assert_eq!(routed, call, "{path}");
            let segments = match scoring_path(&M::POST, path).unwrap() {
                Endpoint(e) | KserveV1Predict(e) | V2Infer(e, None) => vec![e],
                Pinned(e, s) | V2Infer(e, Some(s)) => vec![e, s],
                Sole => vec![],
            };
            assert_eq!(segments, call, "{path}");
        }
        // Left to the router: other methods, escapes, empty segments, longer and shorter paths.
        for path in [
            "/serving-endpoints/t%78/invocations",
            "/serving-endpoints//invocations",
            "/serving-endpoints/tx/invocations/",
            "/serving-endpoints/tx/invocations/x",
            "/serving-endpoints/tx",
            "/serving-endpoints/tx/served-models//invocations",
            "/serving-endpoints/tx/served-models/a%20b/invocations",
            "/serving-endpoints/tx/served-models/a/invocations/x",
            "/serving-endpoints/tx/infer",
            "/invocations/",
            "/api/2.0/serving-endpoints/tx/invocations",
            "/v2/models/tx/invocations",
            "/v2/models//infer",
            "/v2/models/tx/versions//infer",
            "/v2/models/tx/versions/3/infer/",
            "/v2/models/t%78/infer",
            "/v1/models/:predict",
            "/v1/models/a/b:predict",
            "/v1/models/tx",
            "/v1/models/t%78:predict",
        ] {
            assert_eq!(scoring_path(&M::POST, path), None, "{path}");
        }
        assert_eq!(
            scoring_path(&M::GET, "/serving-endpoints/tx/invocations"),
            None
        );
    }

    #[test]
    fn grants_find_the_endpoint_a_path_names() {
        assert_eq!(endpoint_of("/serving-endpoints/tx/invocations"), Some("tx"));
        assert_eq!(
            endpoint_of("/serving-endpoints/tx/served-models/a/invocations"),
            Some("tx")
        );
        assert_eq!(
            endpoint_of("/api/2.0/serving-endpoints/tx/config"),
            Some("tx")
        );
        assert_eq!(
            endpoint_of("/api/2.0/permissions/serving-endpoints/tx/permissionLevels"),
            Some("tx")
        );
        assert_eq!(endpoint_of("/v2/models/tx/versions/2/infer"), Some("tx"));
        assert_eq!(endpoint_of("/api/2.0/serving-endpoints"), None);
        assert_eq!(endpoint_of("/api/2.0/feature-tables/t/rows"), None);
        assert_eq!(endpoint_of("/invocations"), None);
        assert_eq!(endpoint_of("/v1/models/tx:predict"), Some("tx"));
        assert_eq!(endpoint_of("/v1/models/tx"), Some("tx"));
        let predict = route_of("/v1/models/tx:predict").unwrap();
        assert_eq!((predict.method, predict.class), (Post, Query));
        assert_eq!(route_of("/v1/models/tx").unwrap().method, Get);
        assert!(route_of("/v1/models/:predict").is_some_and(|r| r.method == Get));
        assert_eq!(endpoint_of("/no/such/path"), None);
    }

    #[test]
    fn routes_of_one_path_share_a_class_and_pairs_are_unique() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                if a.path == b.path {
                    assert_eq!(a.class, b.class, "{}", a.path);
                    assert_ne!(a.method, b.method, "{} twice", a.path);
                }
            }
        }
    }
}
