"""Collect the general-PC MNIST runs into results/pc_mnist/results.json (numbers copied, never edited).

Usage: .venv/bin/python scripts/collect_pc_mnist.py runs/pc/mnist_supervised runs/pc/mnist_generative
"""

import json
import sys
from pathlib import Path

sup, gen = (Path(a) for a in sys.argv[1:3])
out = Path(__file__).resolve().parents[1] / "results" / "pc_mnist"
doc = {
    "supervised": {"fit_summary": json.loads((sup / "summary.json").read_text())},
    "generative": {"fit_summary": json.loads((gen / "summary.json").read_text())},
}
for name, run in (("supervised", sup), ("generative", gen)):
    report = run / "analysis0" / "report.json"
    if report.exists():
        doc[name]["analysis"] = json.loads(report.read_text())
    doc[name]["config_toml"] = (run / "config.toml").read_text()
(out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
print(f"wrote {out / 'results.json'}")
