//! Build script: the git revision `shadowcat --version` prints, as `SHADOWCAT_GIT_REV`.
//!
//! Taken from the environment variable `SHADOWCAT_GIT_REV` when it is set (builds without a
//! `.git`, e.g. the Dockerfile's, pass it in), else from `git rev-parse --short=12 HEAD` in the
//! source tree, else `unknown` (no git, not a repository, a crate tarball). No crate needed.
//! Rebuilt when HEAD moves: the script watches HEAD, the branch it names and packed-refs.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?;
    let s = s.trim();
    (out.status.success() && !s.is_empty()).then(|| s.to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=SHADOWCAT_GIT_REV");
    println!("cargo:rerun-if-changed=build.rs");
    let given = std::env::var("SHADOWCAT_GIT_REV")
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    let rev = given
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .filter(|r| {
            r.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .unwrap_or_else(|| "unknown".to_owned());
    // Rerun when HEAD moves: HEAD itself (a checkout), the branch it points to (a commit; its
    // folder while the branch is only packed), and packed-refs (a gc). In a worktree HEAD lives
    // in its own git dir, the refs in the common one. Only paths that exist: Cargo reruns a
    // script that names a missing one on every build.
    let mut watch = Vec::new();
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        watch.push(PathBuf::from(dir).join("HEAD"));
    }
    if let Some(common) = git(&["rev-parse", "--git-common-dir"]).map(PathBuf::from) {
        watch.push(common.join("packed-refs"));
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            let loose = common.join(branch);
            match (loose.exists(), loose.parent()) {
                (false, Some(folder)) => watch.push(folder.to_path_buf()),
                _ => watch.push(loose),
            }
        }
    }
    for p in watch.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    println!("cargo:rustc-env=SHADOWCAT_GIT_REV={rev}");
}
