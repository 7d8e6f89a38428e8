//! Compose stacks with the user's own images: an image built here, that no registry has
//! ever seen, runs on every node.

use std::process::Command;

use libtest_mimic::{Failed, Trial};

use crate::common::*;
use crate::support::*;

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test(
            "stacks::a-locally-built-image-runs-on-every-node",
            a_locally_built_image_runs_on_every_node,
        ),
        Trial::test(
            "stacks::placement-and-pending-follow-the-compose-file",
            placement_and_pending_follow_the_compose_file,
        ),
        Trial::test(
            "stacks::docker-cli-engine-deploys-with-the-cli-of-the-engine-under-test",
            docker_cli_engine_deploys_with_the_cli_of_the_engine_under_test,
        ),
    ]
}

/// `--docker-cli engine`: the stack is deployed by the CLI that ships with the engine
/// under test (26.1's, copied out of its node image), not the host's (20.10 here), and
/// every report says which; a path that is no CLI fails before anything is created.
fn docker_cli_engine_deploys_with_the_cli_of_the_engine_under_test() -> Result<(), Failed> {
    node_image_for("26.1")?;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.yml"),
        "services:\n  web:\n    image: ${SWARM_E2E_TEST_IMAGE}\n    command: [\"sleep\", \"86400\"]\n",
    )
    .unwrap();
    let scenario = dir.path().join("engine-cli.toml");
    std::fs::write(
        &scenario,
        "name = \"engine-cli\"\n[[nodes]]\nname = \"ec-1\"\nrole = \"manager\"\n[[nodes]]\nname = \"ec-2\"\n\
         [[stacks]]\nname = \"app\"\nfiles = [\"app.yml\"]\n",
    )
    .unwrap();
    let json = dir.path().join("r.json");
    let scenario = scenario.to_str().unwrap();
    let args = [
        "run",
        "--engine",
        "26.1",
        "--docker-cli",
        "engine",
        "--json",
        json.to_str().unwrap(),
        scenario,
    ];
    let out = run(&args, None);
    expect_code(&out, 0)?;
    let report = read_report(&json, "run-report")?;
    let cli = report["runs"][0]["stacks"][0]["cli_version"]
        .as_str()
        .unwrap_or_default();
    let engine = report["runs"][0]["nodes"][0]["engine_version"]
        .as_str()
        .unwrap_or_default();
    if !cli.starts_with("26.1") || cli != engine {
        return Err(format!("deployed by CLI {cli:?}, engine {engine:?}\n{}", out.context()).into());
    }
    assert_clean(&out)?;
    let bogus = dir.path().join("not-a-cli");
    std::fs::write(&bogus, "#!/bin/sh\necho nope\n").unwrap();
    std::fs::set_permissions(&bogus, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = run(&["run", "--docker-cli", bogus.to_str().unwrap(), scenario], None);
    expect_code(&out, 3)?;
    if !out.stderr.contains("cannot be used") || out.stderr.contains("swarm-e2e: run ") {
        return Err(format!("a CLI that is none must fail before any run\n{}", out.context()).into());
    }
    Ok(())
}

/// `placement` and `pending` on a stack's services: where the Compose file's
/// `deploy.placement` lets them run (its replicas interpolated from the stack's `env`)
/// against the declared node labels. The service no node may run is not waited for by
/// the stack's `stack-converges`, since a check expects it pending.
fn placement_and_pending_follow_the_compose_file() -> Result<(), Failed> {
    node_image()?;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.yml"),
        "version: \"3.8\"\nservices:\n  web:\n    image: ${SWARM_E2E_TEST_IMAGE}\n    command: [\"sleep\", \"86400\"]\n    \
         deploy:\n      replicas: ${WEB_REPLICAS:-1}\n      placement:\n        constraints: [\"node.labels.zone == a\"]\n  \
         batch:\n    image: ${SWARM_E2E_TEST_IMAGE}\n    command: [\"sleep\", \"86400\"]\n    deploy:\n      placement:\n        \
         constraints: [\"node.labels.gpu == true\"]\n",
    )
    .unwrap();
    let scenario = dir.path().join("placed.toml");
    std::fs::write(
        &scenario,
        "name = \"placed\"\n[[nodes]]\nname = \"pp-1\"\nrole = \"manager\"\n[[nodes]]\nname = \"pp-2\"\n\
         labels = { zone = \"a\" }\n[[nodes]]\nname = \"pp-3\"\nlabels = { zone = \"a\" }\n[[stacks]]\nname = \"app\"\n\
         files = [\"app.yml\"]\nenv = { WEB_REPLICAS = \"2\" }\n[[checks]]\nname = \"web-placed\"\nkind = \"placement\"\n\
         stack = \"app\"\nservice = \"web\"\n[[checks]]\nname = \"batch-waits\"\nkind = \"pending\"\nstack = \"app\"\n\
         service = \"batch\"\n",
    )
    .unwrap();
    let out = run(&["run", scenario.to_str().unwrap()], None);
    expect_code(&out, 0)?;
    for passed in [
        "placed::web-placed ... ok",
        "placed::batch-waits ... ok",
        "placed::stack-converges-app ... ok",
    ] {
        if !out
            .stdout
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .contains(passed)
        {
            return Err(format!("expected `{passed}`\n{}", out.context()).into());
        }
    }
    assert_clean(&out)
}

/// `build:` with `FROM scratch` and the busybox binary: swarm-e2e builds it on the host
/// engine, copies it onto the nodes, and the global service runs one task per node that
/// answers by name from every node.
fn a_locally_built_image_runs_on_every_node() -> Result<(), Failed> {
    node_image()?;
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("app");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::copy("/bin/busybox", context.join("busybox"))
        .map_err(|e| format!("/bin/busybox (busybox-static): {e}"))?;
    std::fs::write(
        context.join("Containerfile"),
        "FROM scratch\nARG GREETING\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\nCMD [\"sleep\", \"86400\"]\n",
    )
    .unwrap();
    // A tag nothing else has: the image exists only once this test built it.
    let image = format!("swarm-e2e-test/built-here:{}", std::process::id());
    std::fs::write(
        dir.path().join("app.yml"),
        format!(
            "version: \"3.8\"\nservices:\n  app:\n    image: {image}\n    build:\n      context: ./app\n      \
             dockerfile: Containerfile\n      args:\n        GREETING: hello\n    deploy:\n      mode: global\n      \
             endpoint_mode: dnsrr\n"
        ),
    )
    .unwrap();
    let scenario = dir.path().join("built.toml");
    std::fs::write(
        &scenario,
        "name = \"built-here\"\n[[nodes]]\nname = \"bh-1\"\nrole = \"manager\"\n[[nodes]]\nname = \"bh-2\"\n\
         [[nodes]]\nname = \"bh-3\"\n[[stacks]]\nname = \"built\"\nfiles = [\"app.yml\"]\n[[checks]]\n\
         name = \"built-reach\"\nkind = \"stack-reach\"\nstack = \"built\"\n",
    )
    .unwrap();
    let out = run(&["run", scenario.to_str().unwrap()], None);
    let removed = Command::new("docker").args(["rmi", "-f", &image]).output();
    expect_code(&out, 0)?;
    if !out.stdout.contains("test result: ok. 3 passed")
        || !out
            .stderr
            .contains(&format!("built {image} (service app of stack built)"))
        || !out.stderr.contains(&format!("copied {image}"))
        || !out.stderr.contains("onto 3 node(s)")
    {
        return Err(format!(
            "expected the image built, copied onto 3 nodes, and 3 checks passed\n{}",
            out.context()
        )
        .into());
    }
    if !removed.is_ok_and(|r| r.status.success()) {
        return Err(format!("the test could not remove {image} from the host engine").into());
    }
    assert_clean(&out)
}
