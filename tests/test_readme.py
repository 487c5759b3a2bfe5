"""The README's Python example runs as printed."""

import re
from pathlib import Path


def test_readme_python_example_runs(capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "the README should carry a Python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert namespace["images"].shape == (512, 784)
    assert 400 < float(namespace["metrics"].bce) < 800


def test_readme_network_example_runs():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "PCNetwork" in b]
    assert blocks, "the README should show the PCNetwork API"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    trace = namespace["metrics"].energy_trace
    assert trace.shape == (21,) and float(trace[-1]) < float(trace[0])
    assert namespace["logits"].shape == (256, 10)
    assert abs(namespace["states"]["y"] - namespace["logits"]).max() < 1e-5
