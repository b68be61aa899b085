//! `/api/2.0/serving-endpoints/{name}/promotion`: an endpoint's promotion rules (PUT to set,
//! DELETE to remove, through the control plane: checked, published at once, saved) and where
//! its evaluation stands (GET: state, figures, rules, decisions; built by
//! [`crate::promotion::Promotions::view`]).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::admin::{read_body, reply, run_control};
use super::error::ApiError;
use super::AppState;
use crate::endpoint::control::ControlError;
use crate::error::RequestError;
use crate::settings::promotion::PromotionSettings;
use crate::settings::Violation;

pub async fn get_promotion(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let endpoint = state
        .control
        .endpoints
        .get(&name)
        .ok_or_else(|| RequestError::NotFound(format!("endpoint '{name}' does not exist")))?;
    Ok(reply(StatusCode::OK, state.promotions.view(&endpoint)))
}

pub async fn put_promotion(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let rules: PromotionSettings = read_body(&req, payload, &state).await?;
    set(&state, path.into_inner(), Some(rules)).await
}

pub async fn delete_promotion(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    set(&state, path.into_inner(), None).await
}

async fn set(
    state: &AppState,
    name: String,
    rules: Option<PromotionSettings>,
) -> Result<HttpResponse, ApiError> {
    let (control, promotions) = (state.control.clone(), state.promotions.clone());
    let monitoring = promotions.monitoring();
    let moves_aliases = control.updater.registry.moves_aliases();
    run_control(
        move || {
            control.amend(&name, |s| {
                let problem = rules
                    .as_ref()
                    .and_then(|r| r.deployment_problem(monitoring, moves_aliases));
                if let Some(message) = problem {
                    return Err(ControlError::Invalid(vec![Violation {
                        key: "promotion".into(),
                        message,
                    }]));
                }
                s.promotion = rules;
                Ok(())
            })
        },
        move |endpoint| promotions.view(&endpoint),
    )
    .await
}
