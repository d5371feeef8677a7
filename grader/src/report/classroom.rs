//! GitHub Classroom's autograding result: the JSON a grading step hands, base64-encoded, to
//! `classroom-resources/autograding-grading-reporter`. One test per kata, scored with the kata's
//! points, so Classroom's points column adds up per kata rather than all or nothing.

use serde::Serialize;

use crate::grade::{Status, UnitResult};

#[derive(Debug, Serialize)]
struct Result<'a> {
    version: u32,
    status: &'static str,
    max_score: u32,
    tests: Vec<Test<'a>>,
}

#[derive(Debug, Serialize)]
struct Test<'a> {
    name: String,
    status: &'static str,
    score: u32,
    message: String,
    test_code: String,
    filename: &'a str,
    line_no: u32,
    execution_time: String,
}

pub fn render(results: &[UnitResult]) -> anyhow::Result<String> {
    let tests: Vec<Test<'_>> = results
        .iter()
        .map(|r| Test {
            name: format!("{} {}", r.name, r.title),
            status: status(r.status),
            score: r.points,
            message: super::reason(r),
            test_code: format!("grader check {}", r.number),
            filename: &r.file,
            line_no: 0,
            execution_time: format!(
                "{:.2}s",
                r.tests.iter().map(|t| t.duration_ms).sum::<u64>() as f64 / 1000.0
            ),
        })
        .collect();
    let overall = if results.iter().any(|r| r.status == Status::Error) {
        "error"
    } else if results.iter().all(|r| r.status == Status::Passed) {
        "pass"
    } else {
        "fail"
    };
    let result = Result {
        version: 1,
        status: overall,
        max_score: results.iter().map(|r| r.max_points).sum(),
        tests,
    };
    Ok(serde_json::to_string(&result)?)
}

fn status(status: Status) -> &'static str {
    match status {
        Status::Passed => "pass",
        Status::Failed | Status::CompileError | Status::TimedOut => "fail",
        Status::Error => "error",
    }
}
