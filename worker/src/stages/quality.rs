//! Stage 5: score every record 0..1 from named features (see [`crate::analysis::quality`]),
//! drop those under `quality_threshold`, and keep a histogram of all scores.

use mcp_shared::domain::pipeline::Record;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Control, Reject, Rejects, Stopped};
use crate::analysis::quality;

pub const HISTOGRAM_BINS: usize = 10;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityStats {
    /// Counts of scores in [0, 0.1), [0.1, 0.2) … [0.9, 1.0].
    pub histogram: Vec<u64>,
    pub score_sum: f64,
    pub scored: u64,
    pub rejects: Rejects,
}

pub fn assess(
    records: Vec<Record>,
    threshold: f64,
    ctl: &Control<'_>,
) -> Result<(Vec<Record>, QualityStats), Stopped> {
    let mut stats = QualityStats {
        histogram: vec![0; HISTOGRAM_BINS],
        ..Default::default()
    };
    let mut kept = Vec::with_capacity(records.len());
    for (i, mut r) in records.into_iter().enumerate() {
        ctl.tick(i as u64 + 1)?;
        let q = quality::assess(&r);
        stats.histogram[quality::histogram_bin(q.score).min(HISTOGRAM_BINS - 1)] += 1;
        stats.score_sum += q.score;
        stats.scored += 1;
        if q.score < threshold {
            stats.rejects.add(
                "low_quality",
                Reject {
                    stage: "quality_assessment".into(),
                    line: None,
                    id: Some(r.id.clone()),
                    reason: format!("quality score {:.3} below threshold {threshold}", q.score),
                },
            );
            continue;
        }
        r.metadata.insert(
            "quality".into(),
            json!({"score": (q.score * 1000.0).round() / 1000.0, "features": q.features}),
        );
        kept.push(r);
    }
    Ok((kept, stats))
}
