//! The real course keeps its contract: every exercise fails as shipped (and works when nothing is
//! cancelled), every solution passes, every decoy is rejected. This is `grader verify` on the
//! repository itself.

use predicates::str::contains;

#[test]
fn the_course_keeps_the_kata_contract() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    assert_cmd::Command::cargo_bin("grader")
        .expect("grader binary")
        .arg("--root")
        .arg(root)
        .arg("verify")
        .env("NO_COLOR", "1")
        .assert()
        .success()
        .stdout(contains("contract holds for"));
}
