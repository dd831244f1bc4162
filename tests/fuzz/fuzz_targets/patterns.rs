//! Ignore patterns never panic: the first line is a path, the rest a .dockerignore; every prefix of the
//! path is judged as the walk and the watcher would. The filter's one-automaton matching must also agree
//! with the definition, pattern by pattern: a built-in matching the path or a parent excludes it, else the
//! last user pattern matching it or a parent decides.
#![no_main]
use devloop::filter::{Filter, Pattern, BUILTIN_IGNORES};
use libfuzzer_sys::fuzz_target;

fn by_definition(patterns: &[Pattern], builtin: &[Pattern], path: &str) -> bool {
    if builtin.iter().any(|p| p.matches_or_parent(path)) {
        return true;
    }
    let mut excluded = false;
    for p in patterns {
        if p.matches_or_parent(path) {
            excluded = !p.as_str().starts_with('!');
        }
    }
    excluded
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (path, rest) = text.split_once('\n').unwrap_or((text, ""));
    let patterns: Vec<String> = devloop::filter::parse_dockerignore(rest).into_iter().map(|(_, p)| p).collect();
    if let Ok(filter) = Filter::new(&patterns) {
        let parsed: Vec<Pattern> = patterns.iter().map(|p| Pattern::parse(p).expect("the filter parsed it")).collect();
        let builtin: Vec<Pattern> = BUILTIN_IGNORES.iter().map(|p| Pattern::parse(p).expect("built-in")).collect();
        assert_eq!(filter.excluded(path), by_definition(&parsed, &builtin, path), "path {path:?}, patterns {patterns:?}");
        let _ = filter.may_reinclude_below(path);
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            end += i;
            let _ = filter.excluded(&path[..end]);
            end += 1;
        }
    }
});
