//! `steady`: a constant arrival rate (goose's throttle shared by all users) of varied,
//! realistic requests: demo transactions in batches of 1..N rows, every format mixed.

use std::sync::Arc;

use anyhow::Result;
use serde_json::json;

use super::{throttled, Ctx};
use crate::cli::SteadyArgs;
use crate::report::{Check, Outcome};

pub async fn run(ctx: &Ctx<'_>, args: &SteadyArgs) -> Result<Outcome> {
    let shape = throttled(ctx.common, &args.pace);
    let (load, _) = ctx
        .load("steady", "steady", &shape, Arc::new(ctx.mix()))
        .await?;
    let achieved = load.throughput_rps / args.pace.rate as f64;
    let details_md = format!(
        "## Arrival rate\n\nTarget {} req/s, achieved {:.1} req/s ({:.0} % of the target); \
         below the target means the users could not keep up (see the corrected latency).\n",
        args.pace.rate,
        load.throughput_rps,
        achieved * 100.0
    );
    Ok(Outcome {
        checks: vec![Check::no_failures(&load)],
        details: json!({"target_rps": args.pace.rate, "achieved_share": achieved}),
        details_md,
        load: Some(load),
    })
}
