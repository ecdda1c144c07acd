"""Defaults read from the machine's own configuration: apt sources, pip config, CA bundles.

No package-registry host is named in this project: mirrors and index URLs come from here or from options.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

CA_ENV_VARS = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT")


def apt_source_entries(root="/etc/apt"):
    """Yield (uri, suites, components) from sources.list, sources.list.d/*.list and *.sources (deb822)."""
    root = Path(root)
    files = [root / "sources.list"] + sorted((root / "sources.list.d").glob("*")) if root.exists() else []
    for f in files:
        if not f.is_file():
            continue
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        if f.suffix == ".sources":
            for para in re.split(r"\n\s*\n", text):
                fields = {}
                for line in para.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
                if "deb" not in fields.get("types", "").split():
                    continue
                for uri in fields.get("uris", "").split():
                    yield uri, fields.get("suites", "").split(), fields.get("components", "").split()
        else:
            for line in text.splitlines():
                line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(line) >= 3 and line[0] == "deb":
                    yield line[1], [line[2]], line[3:]


def debian_mirror(root="/etc/apt"):
    """The Debian archive mirror of this machine's apt sources, or None.

    Picks the first source that serves a plain Debian suite (no -security/-updates) with `main`.
    """
    for uri, suites, comps in apt_source_entries(root):
        if "main" in comps and any(re.fullmatch(r"[a-z]+", s) for s in suites) and "security" not in uri:
            return uri.rstrip("/")
    return None


def pip_config():
    """pip's effective configuration as {key: value} (e.g. 'global.index-url'), from `pip config list`."""
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    conf = {}
    for line in out.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            conf[k.strip()] = v.strip().strip("'\"")
    return conf


def _network_urls(value):
    return [u for u in (value or "").split() if u.startswith(("http://", "https://"))]


def pip_index_urls():
    """(index_url, [extra_index_urls]) usable from inside a build container: env first, then pip config.

    Local (file://) indexes are left out: they do not exist inside the build container.
    """
    conf = pip_config()
    index = os.environ.get("PIP_INDEX_URL") or conf.get("global.index-url") or conf.get(":env:.index-url") or ""
    extra = os.environ.get("PIP_EXTRA_INDEX_URL") or conf.get("global.extra-index-url") or ""
    index_urls = _network_urls(index)
    return (index_urls[0] if index_urls else None), _network_urls(extra)


def pip_find_links():
    """Local wheel folders pip is configured to search (PIP_FIND_LINKS, then pip config): the default wheelhouse
    of stacks that need one (a CPU-only torch wheel)."""
    conf = pip_config()
    value = os.environ.get("PIP_FIND_LINKS") or conf.get("global.find-links") or conf.get(":env:.find-links") or ""
    folders = [v[len("file://"):] if v.startswith("file://") else v for v in value.split()]
    return [Path(f) for f in folders if "://" not in f and Path(f).is_dir()]


def ca_bundle_from_env():
    """The extra CA bundle to give image builds: the first of SSL_CERT_FILE, REQUESTS_CA_BUNDLE, PIP_CERT set."""
    for var in CA_ENV_VARS:
        value = os.environ.get(var)
        if value and Path(value).is_file():
            return Path(value)
    return None


def npm_registry():
    """npm's configured registry (for stacks that install from npm), or None for npm's own default."""
    try:
        out = subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    value = out.stdout.strip()
    return value or None
