//! Building runtime environments: once per spec, even when several processes
//! (here threads with separate caches on the same folder) ask at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use mse_runtime::{EnvCache, ImageSpec};

/// `major.minor` of the interpreter environments are built with.
fn host_python() -> String {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let output = std::process::Command::new(python)
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn tiny_spec() -> ImageSpec {
    // No packages: a bare virtual environment, built without the network.
    ImageSpec {
        reference: "example.org/tiny:1".into(),
        python: host_python(),
        prepare: false,
        source: None,
        requested: Vec::new(),
        packages: Vec::new(),
        tee: Default::default(),
    }
}

#[test]
fn concurrent_builds_of_one_spec_build_it_once_and_reuse_it() {
    let dir = tempfile::tempdir().unwrap();
    let builds = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let root = dir.path().to_path_buf();
            let builds = builds.clone();
            std::thread::spawn(move || {
                let cache = EnvCache::new(root);
                cache
                    .ensure(&tiny_spec(), &mut |_| {
                        builds.fetch_add(1, Ordering::SeqCst);
                    })
                    .unwrap()
            })
        })
        .collect();
    let envs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(builds.load(Ordering::SeqCst), 1, "built exactly once");
    assert!(envs.windows(2).all(|w| w[0] == w[1]));
    assert!(envs[0].python.exists());
    assert_eq!(envs[0].digest, tiny_spec().digest());
    let output = std::process::Command::new(&envs[0].python)
        .args(["-c", "import sys; print(sys.prefix != sys.base_prefix)"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "True",
        "it is a virtual environment"
    );

    // Later calls reuse it without building.
    EnvCache::new(dir.path())
        .ensure(&tiny_spec(), &mut |_| panic!("built again"))
        .unwrap();
}

#[test]
fn a_spec_needing_another_python_fails_with_the_versions() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ImageSpec {
        python: "2.7".into(),
        ..tiny_spec()
    };
    let err = EnvCache::new(dir.path())
        .ensure(&spec, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs Python 2.7"), "{err}");
}
