//! JUnit XML: one testsuite per kata, one testcase per hidden test. A kata that does not compile
//! (or could not be graded) is one errored testcase named `build`, so its suite never looks empty
//! or green to a CI test reporter.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::grade::{Status, UnitResult};
use crate::run::Outcome;

pub fn render(results: &[UnitResult], took: Duration) -> anyhow::Result<String> {
    let mut report = Report::new("grader");
    report.set_time(took);
    for result in results {
        let mut suite = TestSuite::new(result.name.clone());
        if matches!(result.status, Status::CompileError | Status::Error) {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            let text = if result.compile_errors.is_empty() {
                result.error.clone().unwrap_or_default()
            } else {
                result.compile_errors.join("\n")
            };
            status.set_message(super::reason(result)).set_description(text);
            let mut case = TestCase::new("build", status);
            case.set_classname(result.name.clone());
            suite.add_test_case(case);
        }
        for test in &result.tests {
            let status = match test.status {
                Outcome::Passed => TestCaseStatus::success(),
                Outcome::Failed | Outcome::TimedOut => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    status
                        .set_message(super::first_line(&test.message))
                        .set_type(if test.status == Outcome::TimedOut {
                            "timed out"
                        } else {
                            "failed"
                        })
                        .set_description(test.message.clone());
                    status
                }
            };
            let mut case = TestCase::new(test.name.clone(), status);
            case.set_classname(result.name.clone())
                .set_time(Duration::from_millis(test.duration_ms));
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    Ok(report.to_string()?)
}
