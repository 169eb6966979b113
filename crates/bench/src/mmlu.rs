//! The shared MMLU sample (`../shared/data/mmlu-public.jsonl`) as benchmark input.

use std::io::BufRead;

use common::views::{QuestionKind, QuestionSpec};

pub struct MmluQuestion {
    pub question: QuestionSpec,
    /// The correct option, 0-based.
    pub answer: u32,
}

/// Every `step`-th record, `count` of them: a spread over subjects, not the first few.
pub fn sample(count: usize) -> anyhow::Result<Vec<MmluQuestion>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/mmlu-public.jsonl"
    );
    let file = std::fs::File::open(path).map_err(|error| anyhow::anyhow!("cannot open {path}: {error}"))?;
    let records: Vec<String> = std::io::BufReader::new(file).lines().collect::<Result<_, _>>()?;
    let step = (records.len() / count.max(1)).max(1);
    records
        .iter()
        .step_by(step)
        .take(count)
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line)?;
            let options: Vec<String> = record["options"]
                .as_array()
                .map(|options| {
                    options
                        .iter()
                        .filter_map(|o| o.as_str())
                        .map(|o| o.trim().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            Ok(MmluQuestion {
                question: QuestionSpec {
                    text: record["question"].as_str().unwrap_or_default().trim().to_owned(),
                    options,
                    kind: QuestionKind::Single,
                },
                answer: u32::try_from(record["answer"].as_u64().unwrap_or(0)).unwrap_or(0),
            })
        })
        .collect()
}
