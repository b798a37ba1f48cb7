#!/usr/bin/env bash
# The package as an index would get it: builds the sdist and, from it, the wheel; checks both
# with twine (what PyPI would show), checks what they hold, then installs the wheel into a fresh
# venv and uses it as a pip user would. Run by .ci/run; needs the dev extra (build, twine).
#   usage: scripts/check-package.sh [OUTDIR]   (default: a temporary folder, removed afterwards)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PY:-.venv/bin/python}"
if [[ -n ${1:-} ]]; then
    out="$1"
    mkdir -p "$out"
else
    out="$(mktemp -d)"
    trap 'rm -rf "$out"' EXIT
fi

echo "package: building the sdist and the wheel into $out/dist"
"$PY" -m build --outdir "$out/dist" . >"$out/build.log" 2>&1 || {
    tail -n 30 "$out/build.log" >&2
    echo "package: the build failed (log above); run $PY -m build to see it whole" >&2
    exit 1
}
if grep -i "deprecat" "$out/build.log" >&2; then
    echo "package: the build warns of a deprecation (above); fix pyproject.toml" >&2
    exit 1
fi
"$PY" -m twine check --strict "$out"/dist/*

# What the two files hold.
"$PY" - "$out/dist" <<'PY'
import sys, tarfile, zipfile
from email.parser import Parser
from pathlib import Path

dist = Path(sys.argv[1])
wheel = zipfile.ZipFile(next(dist.glob("*.whl")))
names = set(wheel.namelist())
meta = Parser().parsestr(wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
problems = []
for needed in ("tracing/__init__.py", "tracing/py.typed", "tracing/cli.py", "tracing/demo/__main__.py",
               "kafka_event_tracing.py"):
    if needed not in names:
        problems.append(f"the wheel lacks {needed}")
if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
    problems.append("the wheel lacks its LICENSE")
if any(n.startswith(("tests/", "benchmarks/", "examples/", "scripts/")) for n in names):
    problems.append("the wheel holds files of the repository that are not the package")
if meta["License-Expression"] != "Apache-2.0":
    problems.append(f"License-Expression is {meta['License-Expression']!r}, not 'Apache-2.0'")
classifiers = meta.get_all("Classifier") or []
for needed in ("Typing :: Typed", "Programming Language :: Python :: 3.11"):
    if needed not in classifiers:
        problems.append(f"classifier {needed!r} missing")
if not meta.get_all("Project-URL"):
    problems.append("no Project-URL")
description = meta.get_payload()
if meta["Description-Content-Type"] != "text/markdown" or not description.startswith("# kafka-event-tracing"):
    problems.append("the long description is not docs/PYPI.md as markdown")
for word in ("make ", "examples/", "collector-config"):
    if word in description:
        problems.append(f"the long description speaks of {word.strip()!r}, which a pip user does not have")
sdist = tarfile.open(next(dist.glob("*.tar.gz")))
root = sdist.getnames()[0].split("/")[0]
for needed in ("LICENSE", "docs/PYPI.md", "pyproject.toml", "kafka_event_tracing.py"):
    if f"{root}/{needed}" not in sdist.getnames():
        problems.append(f"the sdist lacks {needed}")
for p in problems:
    print("package:", p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
echo "package: contents as expected (LICENSE, py.typed, tracing.demo, the eventchain entry module)"

# Installed from the wheel, as the README says, into a venv of its own.
echo "package: installing the wheel into a fresh venv"
python_bin="$("$PY" -c 'import sys; print(sys._base_executable)')"
"$python_bin" -m venv "$out/venv"
"$out/venv/bin/pip" install --disable-pip-version-check -q -c constraints.txt "$out"/dist/*.whl
cd "$out"  # away from the checkout, whose tracing/ would be found first
"$out/venv/bin/python" -c '
import sys, tracing
loaded = sorted(m for m in sys.modules if m.startswith(("opentelemetry", "confluent_kafka")))
assert not loaded, f"import tracing loaded {loaded}"
assert tracing.__file__.startswith(sys.prefix), tracing.__file__
'
"$out/venv/bin/eventchain" --version
"$out/venv/bin/eventchain" --help >/dev/null
# The wheel has no extras installed: a propagator from one is named with the extra, in one line.
line="$(OTEL_PROPAGATORS=tracecontext,b3 "$out/venv/bin/python" -c 'import tracing; tracing.configure("x")' 2>&1 | tail -n 1 || true)"
[[ $line == *"pip install 'kafka-event-tracing[b3]'"* ]] || {
    echo "package: a missing b3 propagator was not named with its extra: $line" >&2
    exit 1
}
"$out/venv/bin/python" -m tracing.demo >"$out/demo.txt" 2>&1 || {
    tail -n 20 "$out/demo.txt" >&2
    echo "package: python -m tracing.demo failed from the installed wheel (output above)" >&2
    exit 1
}
grep -q "critical path" "$out/demo.txt" || { echo "package: the demo printed no tree" >&2; exit 1; }
echo "package: the wheel installs and works (import, eventchain, the extra named, the demo)"
