//! Latency histograms as the `load` and `bench` reports print them.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// A histogram of microseconds as milliseconds: count, p50, p90, p99, p99.9 and max (only the
/// count when it is empty).
pub fn percentiles(histogram: &Histogram<u64>) -> Value {
    let ms = |micros: u64| micros as f64 / 1000.0;
    if histogram.is_empty() {
        return json!({ "count": 0 });
    }
    json!({
        "count": histogram.len(),
        "p50": ms(histogram.value_at_quantile(0.50)),
        "p90": ms(histogram.value_at_quantile(0.90)),
        "p99": ms(histogram.value_at_quantile(0.99)),
        "p999": ms(histogram.value_at_quantile(0.999)),
        "max": ms(histogram.max()),
    })
}
