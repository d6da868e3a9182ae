//! Delta debugging (Zeller's ddmin) over the op list of a failing sequence: the result is
//! a list where removing any single op makes the disagreement go away (or the budget ran
//! out, which the report says).

use super::harness::{run_sequence, Env, Outcome};
use super::ops::Op;

pub struct Shrunk {
    pub ops: Vec<Op>,
    pub outcome: Outcome,
    pub trials: usize,
    pub exhausted: bool,
}

const MAX_TRIALS: usize = 400;

pub fn shrink(env: &Env, seed: u64, ops: Vec<Op>, outcome: Outcome) -> Shrunk {
    let mut best = Shrunk { ops, outcome, trials: 0, exhausted: false };
    // Ops after the first disagreeing one cannot matter.
    if let Outcome::Disagree { at: Some(i), .. } = best.outcome {
        best.ops.truncate(i + 1);
    }
    // Some disagreements need no op at all (the lower layers alone show it).
    if !best.ops.is_empty() && try_candidate(env, seed, Vec::new(), &mut best) {
        return best;
    }
    let mut n = 2usize;
    while best.ops.len() >= 2 {
        if best.trials >= MAX_TRIALS {
            best.exhausted = true;
            break;
        }
        let chunk = best.ops.len().div_ceil(n);
        let mut reduced = false;
        for start in (0..best.ops.len()).step_by(chunk) {
            let end = (start + chunk).min(best.ops.len());
            // Complement first: removing a chunk is the common, cheap win.
            let candidate: Vec<Op> = best.ops[..start].iter().chain(&best.ops[end..]).cloned().collect();
            if try_candidate(env, seed, candidate, &mut best) {
                n = (n - 1).max(2);
                reduced = true;
                break;
            }
            if best.trials >= MAX_TRIALS {
                break;
            }
        }
        if !reduced {
            if n >= best.ops.len() {
                break;
            }
            n = (n * 2).min(best.ops.len());
        }
    }
    best
}

fn try_candidate(env: &Env, seed: u64, candidate: Vec<Op>, best: &mut Shrunk) -> bool {
    best.trials += 1;
    match run_sequence(env, seed, &candidate) {
        Ok(out @ Outcome::Disagree { .. }) => {
            let mut ops = candidate;
            if let Outcome::Disagree { at: Some(i), .. } = out {
                ops.truncate(i + 1);
            }
            best.ops = ops;
            best.outcome = out;
            true
        }
        _ => false,
    }
}
