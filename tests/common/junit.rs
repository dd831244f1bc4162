//! A `devloop check --report` file read back with a real XML parser (roxmltree), as a CI would, and checked
//! against the JUnit schema's shape: counts that add up, one verdict per case.

use std::path::Path;

/// One `<testcase>`.
#[derive(Debug, Clone)]
pub struct Case {
    /// Its suite's name (`build`, `rollout`, `command`, `setup`).
    pub suite: String,
    pub name: String,
    pub time: f64,
    /// `passed`, `failure`, `error` or `skipped`.
    pub verdict: String,
    /// The verdict element's `message` and `type` attributes and its text.
    pub message: String,
    pub kind: String,
    pub text: String,
    /// `<system-out>`.
    pub out: String,
}

/// The report: its cases, and the root's counts (tests, failures, errors, skipped).
#[derive(Debug)]
pub struct Report {
    pub cases: Vec<Case>,
    pub counts: (usize, usize, usize, usize),
}

impl Report {
    /// The cases of one suite.
    pub fn suite(&self, name: &str) -> Vec<&Case> {
        self.cases.iter().filter(|c| c.suite == name).collect()
    }
}

fn count(n: roxmltree::Node, attr: &str) -> usize {
    n.attribute(attr).unwrap_or_else(|| panic!("<{}> without {attr}", n.tag_name().name())).parse().unwrap()
}

/// Parses the file and checks that each suite's and the root's counts match their cases.
pub fn read(path: &Path) -> Report {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("no report at {}: {e}", path.display()));
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("not XML ({e}):\n{text}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites", "{text}");
    let mut cases = Vec::new();
    for suite in root.children().filter(|n| n.is_element() && n.has_tag_name("testsuite")) {
        let name = suite.attribute("name").unwrap().to_string();
        let mut mine = Vec::new();
        for tc in suite.children().filter(|n| n.has_tag_name("testcase")) {
            assert!(tc.attribute("classname").is_some(), "{text}");
            let time: f64 = tc.attribute("time").unwrap().parse().unwrap();
            let verdicts: Vec<_> = tc.children().filter(|n| n.is_element() && ["failure", "error", "skipped"].contains(&n.tag_name().name())).collect();
            assert!(verdicts.len() <= 1, "{text}");
            let v = verdicts.first();
            let out = tc.children().find(|n| n.has_tag_name("system-out")).and_then(|n| n.text()).unwrap_or("").to_string();
            mine.push(Case {
                suite: name.clone(),
                name: tc.attribute("name").unwrap().to_string(),
                time,
                verdict: v.map_or("passed", |n| n.tag_name().name()).to_string(),
                message: v.and_then(|n| n.attribute("message")).unwrap_or("").to_string(),
                kind: v.and_then(|n| n.attribute("type")).unwrap_or("").to_string(),
                text: v.and_then(|n| n.text()).unwrap_or("").to_string(),
                out,
            });
        }
        let of = |v: &str| mine.iter().filter(|c| c.verdict == v).count();
        let said = (count(suite, "tests"), count(suite, "failures"), count(suite, "errors"), count(suite, "skipped"));
        assert_eq!(said, (mine.len(), of("failure"), of("error"), of("skipped")), "suite {name}:\n{text}");
        cases.extend(mine);
    }
    let of = |v: &str| cases.iter().filter(|c| c.verdict == v).count();
    let counts = (count(root, "tests"), count(root, "failures"), count(root, "errors"), count(root, "skipped"));
    assert_eq!(counts, (cases.len(), of("failure"), of("error"), of("skipped")), "{text}");
    Report { cases, counts }
}
