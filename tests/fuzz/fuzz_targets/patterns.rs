//! Ignore patterns never panic: the first line is a path, the rest a .dockerignore; every prefix of the
//! path is judged as the walk and the watcher would.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (path, rest) = text.split_once('\n').unwrap_or((text, ""));
    let patterns: Vec<String> = devloop::filter::parse_dockerignore(rest).into_iter().map(|(_, p)| p).collect();
    if let Ok(filter) = devloop::filter::Filter::new(&patterns) {
        let _ = filter.excluded(path);
        let _ = filter.may_reinclude_below(path);
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            end += i;
            let _ = filter.excluded(&path[..end]);
            end += 1;
        }
    }
});
