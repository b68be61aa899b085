//! `GET /api/2.0/serving-endpoints/{name}/monitoring`: the drift table per served entity and
//! feature, the flags, and the quality of labelled predictions side by side.

use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{mlflow_error, AppState};
use crate::error::RequestError;

pub async fn get_monitoring(path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let name = path.into_inner();
    let gateway = state.gateway.clone();
    let Some(endpoint) = gateway.endpoint(&name) else {
        return mlflow_error(&RequestError::NotFound(format!(
            "endpoint '{name}' does not exist"
        )));
    };
    let Some(config) = gateway.monitoring().cloned() else {
        return mlflow_error(&RequestError::bad(
            "monitoring is off (monitoring.enabled: false)".to_string(),
        ));
    };
    let built = web::block(move || {
        let reports = gateway.monitoring_reports(&endpoint);
        // Quality by window, every served entity side by side (champion against challenger).
        let mut comparison: Vec<serde_json::Value> = Vec::new();
        for report in &reports {
            for q in &report.quality {
                let at = match comparison.iter().position(|c| c["window"] == q.window) {
                    Some(i) => i,
                    None => {
                        comparison.push(json!({"window": q.window, "served_entities": {}}));
                        comparison.len() - 1
                    }
                };
                comparison[at]["served_entities"][&report.served_entity] = json!(q.figures);
            }
        }
        let pending = endpoint.pending_labels.figures();
        json!({
            "endpoint": endpoint.name,
            "time": crate::drift::report::iso(crate::drift::monitor::now_ms()),
            "windows": config.widths.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            "min_count": config.min_count,
            "thresholds": config.thresholds,
            "drift": reports.iter().any(|r| r.drift),
            "served_entities": reports,
            "quality_comparison": comparison,
            "labels": {
                "pending_rows": pending.rows,
                "pending_bytes": pending.bytes,
            },
        })
        .to_string()
    })
    .await;
    match built {
        Ok(body) => HttpResponse::Ok()
            .content_type(ContentType::json())
            .body(body),
        Err(e) => mlflow_error(&RequestError::Internal(format!(
            "the monitoring report failed: {e}"
        ))),
    }
}
