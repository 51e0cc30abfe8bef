//! The canister's answers, for people.

use walsh_interface::{ModelInfo, ModelSource};

/// `model_info` as a few aligned lines.
pub fn model_info(i: &ModelInfo) -> String {
    let c = &i.config;
    let source = match &i.source {
        ModelSource::Embedded => "embedded in the wasm (the default model)".to_string(),
        ModelSource::Uploaded { at_ns, by } => {
            format!("uploaded by {by} at {}", utc(*at_ns))
        }
    };
    format!(
        "model       {} ({} algebra, {} embedding{})\n\
         shape       {} layers, {} wide, {} heads, context {}, vocabulary {}\n\
         parameters  {} ({} brain, {} embedding), packing {}\n\
         blob        {} bytes, checksum {}\n\
         heap        {} bytes of loaded weights\n\
         source      {source}\n",
        c.name,
        c.algebra,
        c.embedding,
        if c.embedding == "hash" {
            format!(", {} buckets", c.hash_buckets)
        } else {
            String::new()
        },
        c.n_layer,
        c.n_embd,
        c.n_head,
        c.block_size,
        c.vocab_size,
        i.total_params,
        i.brain_params,
        i.embedding_params,
        i.packing,
        i.blob_size,
        i.sha256,
        i.heap_bytes,
    )
}

/// `ns` since 1970 as a UTC date and time (the IC's clock is UTC).
pub fn utc(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Days to a civil date (H. Hinnant's algorithm, proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        // `date -u -d @1795424400`: Mon Nov 23 09:00:00 UTC 2026.
        assert_eq!(utc(1_795_424_400_000_000_000), "2026-11-23 09:00:00 UTC");
        // 2024-02-29 23:59:59, a leap day.
        assert_eq!(utc(1_709_251_199_000_000_000), "2024-02-29 23:59:59 UTC");
    }
}
