//! The scenarios, one module each, and helpers they share.

pub mod burst;
pub mod chaos;
pub mod compare;
pub mod deps;
pub mod dispatch;
pub mod dispatch_pg;
pub mod latency;
pub mod memory;
pub mod scale;

use anyhow::{Context, Result};
use minitower_client::Client;
use reqwest::Method;
use std::collections::BTreeMap;

/// Server-side time per route from `/metrics`
/// (`minitower_http_request_duration_seconds`): `(sum seconds, count)`
/// keyed by `METHOD path`.
pub async fn route_times(client: &Client) -> Result<BTreeMap<String, (f64, f64)>> {
    let text = client
        .raw(Method::GET, "/metrics")
        .send()
        .await
        .context("scraping /metrics")?
        .text()
        .await?;
    Ok(parse_route_times(&text))
}

fn parse_route_times(text: &str) -> BTreeMap<String, (f64, f64)> {
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in text.lines() {
        let (is_sum, rest) = if let Some(r) =
            line.strip_prefix("minitower_http_request_duration_seconds_sum{")
        {
            (true, r)
        } else if let Some(r) = line.strip_prefix("minitower_http_request_duration_seconds_count{")
        {
            (false, r)
        } else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let label = |name: &str| -> String {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let key = format!("{} {}", label("method"), label("path"));
        let e = out.entry(key).or_default();
        if is_sum {
            e.0 += value;
        } else {
            e.1 += value;
        }
    }
    out
}

/// Mean server-side milliseconds per route between two scrapes.
pub fn route_means(
    before: &BTreeMap<String, (f64, f64)>,
    after: &BTreeMap<String, (f64, f64)>,
) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for (k, (sum, count)) in after {
        let (s0, c0) = before.get(k).copied().unwrap_or_default();
        let n = count - c0;
        if n > 0.0 {
            out.insert(
                k.clone(),
                serde_json::json!({
                    "requests": n,
                    "mean_ms": (sum - s0) / n * 1000.0,
                    "total_s": sum - s0,
                }),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_duration_histogram() {
        let text = "# HELP x\n\
            minitower_http_request_duration_seconds_sum{method=\"POST\",path=\"/api/v1/runs/lease\"} 1.5\n\
            minitower_http_request_duration_seconds_count{method=\"POST\",path=\"/api/v1/runs/lease\"} 3\n\
            minitower_http_request_duration_seconds_bucket{method=\"POST\",path=\"/api/v1/runs/lease\",le=\"0.001\"} 1\n";
        let m = parse_route_times(text);
        assert_eq!(m["POST /api/v1/runs/lease"], (1.5, 3.0));
        let before = BTreeMap::from([("POST /api/v1/runs/lease".to_string(), (0.5, 1.0))]);
        let means = route_means(&before, &m);
        assert_eq!(means["POST /api/v1/runs/lease"]["mean_ms"], 500.0);
    }
}
