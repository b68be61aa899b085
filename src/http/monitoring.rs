//! `GET /api/2.0/serving-endpoints/{name}/monitoring`: the drift table per served entity and
//! feature, the flags, and the quality of labelled predictions side by side (built by
//! [`crate::pipeline::Gateway::monitoring_view`]).

use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};

use super::error::ApiError;
use super::AppState;
use crate::error::RequestError;

/// `?scope=replica`: this replica's counts alone (in a fleet; the default, `fleet`, adds up
/// every replica's).
#[derive(serde::Deserialize)]
pub struct Scope {
    scope: Option<String>,
}

pub async fn get_monitoring(
    path: web::Path<String>,
    query: web::Query<Scope>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let fleet_wide = match query.scope.as_deref() {
        None | Some("fleet") => true,
        Some("replica") => false,
        Some(other) => {
            return Err(
                RequestError::bad(format!("scope '{other}' is not one of fleet, replica")).into(),
            )
        }
    };
    let gateway = state.gateway.clone();
    let endpoint = gateway
        .endpoint(&name)
        .ok_or_else(|| RequestError::NotFound(format!("endpoint '{name}' does not exist")))?;
    let view = web::block(move || gateway.monitoring_view(&endpoint, fleet_wide))
        .await
        .map_err(|e| ApiError::blocked("the monitoring report failed", e))??;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(view.to_string()))
}
