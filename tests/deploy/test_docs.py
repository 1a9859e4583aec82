"""docs/deploy.md and the README agree with the deployment files they describe."""

from __future__ import annotations

import re

from tests.deploy.manifests import ROOT, deploy_text_files, real_env_vars

DOC = ROOT / "docs" / "deploy.md"
# Named by the doc but not in the repository: the user's own env files (git-ignored), and the engine's
# doc (written with the engine).
NOT_IN_REPO = {"deploy/labs.env", "deploy/postgres.env", "docs/engine.md"}


def test_every_labs_variable_named_anywhere_in_deployment_is_real():
    files = deploy_text_files()
    assert DOC in files and len(files) >= 10
    for path in files:
        used = set(re.findall(r"\bLABS_[A-Z0-9_]+\b", path.read_text()))
        assert used <= real_env_vars(), f"{path.relative_to(ROOT)}: {sorted(used - real_env_vars())}"


def test_config_file_variables_are_really_read_by_the_config_module():
    source = (ROOT / "labs_core" / "config.py").read_text()
    assert 'environ.get("LABS_CONFIG")' in source and '"LABS_ENV_FILE"' in source


def test_paths_the_doc_names_exist():
    text = DOC.read_text()
    paths = set(re.findall(r"\b((?:deploy|docs|labs_core|tests)/[\w./-]+\w)", text))
    assert "deploy/docker-compose.yml" in paths and "deploy/k8s" in paths
    for path in paths - NOT_IN_REPO:
        assert (ROOT / path).exists(), path


def test_readme_links_the_deploy_doc():
    assert "(docs/deploy.md)" in (ROOT / "README.md").read_text()
