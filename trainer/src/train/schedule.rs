//! The learning-rate schedule: linear warmup to the peak, then cosine decay to the floor.

use super::TrainConfig;

/// The learning rate of optimizer step `step` (0-based).
pub fn lr_at(cfg: &TrainConfig, step: u64) -> f64 {
    if step < cfg.warmup_steps {
        return cfg.lr * (step + 1) as f64 / cfg.warmup_steps as f64;
    }
    let span = cfg.steps.saturating_sub(cfg.warmup_steps).max(1);
    let progress = ((step - cfg.warmup_steps) as f64 / span as f64).min(1.0);
    cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_the_floor() {
        let cfg = TrainConfig {
            lr: 1.0,
            min_lr: 0.1,
            warmup_steps: 10,
            steps: 110,
            ..TrainConfig::default()
        };
        assert!((lr_at(&cfg, 0) - 0.1).abs() < 1e-12);
        assert!((lr_at(&cfg, 9) - 1.0).abs() < 1e-12);
        assert!((lr_at(&cfg, 10) - 1.0).abs() < 1e-12);
        assert!((lr_at(&cfg, 60) - 0.55).abs() < 1e-12);
        assert!((lr_at(&cfg, 110) - 0.1).abs() < 1e-12);
        assert!((lr_at(&cfg, 500) - 0.1).abs() < 1e-12);
        for s in 10..110 {
            assert!(lr_at(&cfg, s + 1) <= lr_at(&cfg, s));
        }
    }
}
