//! The documentation a newcomer reads: every relative link in the README, `docs/` and the
//! simulator's README reaches a file that exists and, with `#anchor`, a heading in it (as GitHub
//! makes anchors); and the README keeps the two commands the project promises, word for word.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Markdown files a reader navigates between.
fn documents() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md"), root().join("simulator/README.md")];
    let mut guides: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    guides.sort();
    assert!(!guides.is_empty(), "docs/ holds the guides");
    files.extend(guides);
    files
}

/// The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// The lines outside fenced code blocks.
fn prose(text: &str) -> impl Iterator<Item = &str> {
    let mut fenced = false;
    text.lines().filter(move |line| {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            return false;
        }
        !fenced
    })
}

fn anchors(text: &str) -> BTreeSet<String> {
    prose(text).filter(|line| line.starts_with('#')).map(|line| anchor(line.trim_start_matches('#'))).collect()
}

/// The targets of the inline links `[text](target)` in the prose.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in prose(text) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                found.push(rest[..end].to_owned());
                rest = &rest[end..];
            }
        }
    }
    found
}

#[test]
fn every_relative_link_reaches_a_file_and_a_heading() {
    let mut broken = Vec::new();
    for document in documents() {
        let text = fs::read_to_string(&document).unwrap();
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() { document.clone() } else { document.parent().unwrap().join(path) };
            if !file.exists() {
                broken.push(format!("{}: {target}: no such file", document.display()));
            } else if !fragment.is_empty() && file.extension().is_some_and(|ext| ext == "md") {
                let headings = anchors(&fs::read_to_string(&file).unwrap());
                if !headings.contains(fragment) {
                    broken.push(format!("{}: {target}: no such heading (there are {headings:?})", document.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Every file under `folder` (recursively), but build output.
fn files_under(folder: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if path.is_dir() {
            if !matches!(name.as_ref(), "target" | "bin" | "obj" | "corpus" | "artifacts") {
                files_under(&path, found);
            }
        } else {
            found.push(path);
        }
    }
}

#[test]
fn every_guide_named_in_the_sources_exists() {
    let mut files = vec![root().join("cbindgen.toml")];
    for folder in ["src", "cli", "simulator", "bench", "fuzz", "dotnet", "powershell", "packaging", "tests", ".github"]
    {
        files_under(&root().join(folder), &mut files);
    }
    let mut missing = BTreeSet::new();
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else { continue }; // not text
        for (at, _) in text.match_indices("docs/") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'))
                .collect();
            let name = name.trim_end_matches('.');
            if name.ends_with(".md") && !root().join(name).exists() {
                missing.insert(format!("{}: {name}", file.strip_prefix(root()).unwrap().display()));
            }
        }
    }
    assert!(missing.is_empty(), "guides named but missing:\n{}", missing.into_iter().collect::<Vec<_>>().join("\n"));
}

#[test]
fn the_readme_keeps_the_two_commands_word_for_word() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    for command in ["cargo run --release -p defender-cli", "tests/run-all.sh"] {
        let block = format!("```sh\n{command}\n```");
        assert!(readme.contains(&block), "the README shows `{command}` alone in a sh block");
    }
    assert!(
        readme.contains("## What ran where, and what it does not prove"),
        "the README says what ran where, and what that does not prove"
    );
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    assert_eq!(
        anchor(" CI on Windows, macOS and Linux: written, never run"),
        "ci-on-windows-macos-and-linux-written-never-run"
    );
    assert_eq!(anchor(" How fast, how lean: the benchmark"), "how-fast-how-lean-the-benchmark");
    assert_eq!(anchor(" `cloud` values"), "cloud-values");
    assert_eq!(links("see [a](x/a.md#b) and [c](#d)."), ["x/a.md#b", "#d"]);
}
