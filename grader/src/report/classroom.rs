//! GitHub Classroom's autograding result: the JSON a grading step hands, base64-encoded, to
//! `classroom-resources/autograding-grading-reporter`.
//!
//! The reporter shows two numbers that must agree. The points it records are the sum of the
//! tests' `score`s; the figure its log prints for a runner is `passed tests / tests x max_score`,
//! which weighs every test equally (issue 12: one test per kata logged 259.20/540 where the
//! recorded points were 190/540). So every test here is worth the same: a kata becomes
//! `points / unit` tests of `unit` points each, `unit` being the greatest common divisor of the
//! katas' points, and both numbers come out as the points earned.

use serde::Serialize;

use crate::grade::{Status, UnitResult};

/// The result one reporter runner reads.
#[derive(Debug, Serialize)]
pub struct Result {
    /// Format version of the reporter's input (1).
    pub version: u32,
    /// `pass`, `fail` or `error`, for the whole run.
    pub status: &'static str,
    /// The points the runner is worth: every kata's points.
    pub max_score: u32,
    /// Equal-weight entries, `unit` points each, in course order.
    pub tests: Vec<Test>,
}

/// One equal-weight entry: all of a kata worth one point, or part of one worth more.
#[derive(Debug, Serialize)]
pub struct Test {
    /// The kata, and which part of it for a kata of several parts.
    pub name: String,
    /// `pass`, `fail` or `error`: the kata's verdict, the same for all its parts.
    pub status: &'static str,
    /// `unit` points when the kata passed, else 0.
    pub score: u32,
    /// Why the kata did not pass (its first part only; the other parts point to it).
    pub message: String,
    /// The command that checks the kata.
    pub test_code: String,
    /// The file the learner edits.
    pub filename: String,
    /// Always 0: the verdict is the kata's, not a line's.
    pub line_no: u32,
    /// The kata's test time, on its first part.
    pub execution_time: String,
}

/// The reporter's input for `results`.
pub fn result(results: &[UnitResult]) -> Result {
    let unit = results.iter().map(|r| r.max_points).fold(0, gcd);
    let mut tests = Vec::new();
    // A kata worth no points gets no entry: a passing one would raise the log's figure alone.
    for r in results.iter().filter(|r| r.max_points > 0) {
        let parts = r.max_points / unit;
        let seconds = r.tests.iter().map(|t| t.duration_ms).sum::<u64>() as f64 / 1000.0;
        for part in 1..=parts {
            let name = if parts == 1 {
                format!("{} {}", r.name, r.title)
            } else {
                format!("{} {} (part {part} of {parts})", r.name, r.title)
            };
            let message = if part == 1 || r.status == Status::Passed {
                super::reason(r)
            } else {
                format!("as part 1: the kata's {} points are {parts} parts of {unit}", r.max_points)
            };
            tests.push(Test {
                name,
                status: status(r.status),
                score: if r.status == Status::Passed { unit } else { 0 },
                message,
                test_code: format!("grader check {}", r.number),
                filename: r.file.clone(),
                line_no: 0,
                execution_time: format!("{:.2}s", if part == 1 { seconds } else { 0.0 }),
            });
        }
    }
    let overall = if results.iter().any(|r| r.status == Status::Error) {
        "error"
    } else if results.iter().all(|r| r.status == Status::Passed) {
        "pass"
    } else {
        "fail"
    };
    Result {
        version: 1,
        status: overall,
        max_score: results.iter().map(|r| r.max_points).sum(),
        tests,
    }
}

/// [`result`] as the JSON the reporter reads.
pub fn render(results: &[UnitResult]) -> anyhow::Result<String> {
    Ok(serde_json::to_string(&result(results))?)
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn status(status: Status) -> &'static str {
    match status {
        Status::Passed => "pass",
        Status::Failed | Status::CompileError | Status::TimedOut => "fail",
        Status::Error => "error",
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::course::Level;

    fn kata(number: u32, max_points: u32, passed: bool) -> UnitResult {
        let status = if passed { Status::Passed } else { Status::Failed };
        UnitResult {
            name: format!("{number:02}_kata"),
            number,
            title: "a kata".into(),
            level: Level::Beginner,
            status,
            points: if passed { max_points } else { 0 },
            max_points,
            file: format!("exercises/{number:02}_kata/src/lib.rs"),
            compile_errors: Vec::new(),
            warnings: Vec::new(),
            tests: Vec::new(),
            source_hash: None,
            variants: Vec::new(),
            advice: None,
            kind: Default::default(),
            error: None,
        }
    }

    /// What the reporter logs for a runner (`passed / tests x max_score`), and what it records
    /// (the sum of the scores), as exact fractions `(numerator, denominator)`.
    fn logged_and_recorded(result: &Result) -> ((u64, u64), (u64, u64)) {
        let passed = result.tests.iter().filter(|t| t.status == "pass").count() as u64;
        let tests = result.tests.len() as u64;
        let recorded = result.tests.iter().map(|t| u64::from(t.score)).sum::<u64>();
        ((passed * u64::from(result.max_score), tests.max(1)), (recorded, 1))
    }

    #[test]
    fn the_issue_12_class_logs_what_it_records() {
        // The course's points; 12 of 25 katas passed, the log said 259.20 where 190 was recorded.
        let points = [10, 10, 10, 15, 15, 20, 20, 20, 20, 20, 10, 20, 30, 20, 20, 30, 30, 30, 20];
        let points: Vec<u32> = points.into_iter().chain([30, 30, 30, 20, 10, 50]).collect();
        let results: Vec<UnitResult> = points
            .iter()
            .enumerate()
            .map(|(i, &p)| kata(i as u32 + 1, p, i % 2 == 0 && i < 24))
            .collect();
        let result = result(&results);
        let ((num, den), (recorded, _)) = logged_and_recorded(&result);
        assert_eq!(result.max_score, 540);
        assert_eq!(recorded, results.iter().map(|r| u64::from(r.points)).sum::<u64>());
        assert_eq!(num, recorded * den, "the log says {num}/{den}, the points say {recorded}");
        assert_eq!(result.tests.len(), 108, "5-point parts");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(12), ..ProptestConfig::default() })]

        /// For every course and every student, the reporter's log and its recorded points agree.
        #[test]
        fn the_log_and_the_recorded_points_agree(
            katas in proptest::collection::vec((0u32..=60, any::<bool>()), 0..30)
        ) {
            let results: Vec<UnitResult> = katas
                .iter()
                .enumerate()
                .map(|(i, &(points, passed))| kata(i as u32 + 1, points, passed))
                .collect();
            let result = result(&results);
            let earned: u64 = results.iter().map(|r| u64::from(r.points)).sum();
            let ((num, den), (recorded, _)) = logged_and_recorded(&result);
            prop_assert_eq!(recorded, earned, "recorded points are the points earned");
            prop_assert_eq!(num, recorded * den, "log {}/{} vs recorded {}", num, den, recorded);
            prop_assert_eq!(u64::from(result.max_score), results.iter().map(|r| u64::from(r.max_points)).sum::<u64>());
        }
    }
}
