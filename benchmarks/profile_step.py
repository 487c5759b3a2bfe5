"""Profile a GNCN museum training step: XLA thunk time by category, from a jax.profiler trace.

    .venv/bin/python benchmarks/profile_step.py [BATCH] [KIND]      # default 512 gncn_pdh

Traces 3 steps (after 2 warm-up steps) with ``jax.profiler``, reads the trace back with jaxlib's
``ProfileData`` and sums the durations of the thunks XLA's CPU threads ran, by category: matmuls
(YNNPACK fusions / dots), elementwise and reduction fusions, LAPACK (Cholesky, triangular solve),
copies. The sum is over threads (two threads running a matmul together count twice), so the
shares, not the milliseconds, compare with the wall time. ``PREDCODE_LAPACK_THREADS=2`` shows the
LAPACK cost with OpenBLAS's own threads (predcode's default is 1, see predcode/_lapack_threads.py).
"""
import collections
import glob
import shutil
import sys

import jax
import jax.numpy as jnp
from predcode.models.gncn import GNCN, GNCNConfig
from predcode.learning.step import make_trainer
from jax._src.lib import _profile_data
B=int(sys.argv[1]) if len(sys.argv)>1 else 512
KIND=sys.argv[2] if len(sys.argv)>2 else "gncn_pdh"
m=GNCN(GNCNConfig(kind=KIND)); p=m.init(jax.random.key(0)); t=make_trainer(m); o=t.init(p)
x=(jax.random.uniform(jax.random.key(2),(B,784))<0.13).astype(jnp.float32); w=jnp.ones((B,))
f=t.step.unchecked
for _ in range(2): jax.block_until_ready(f(p,o,x,w))
d="/tmp/prof_pdh2"; shutil.rmtree(d, ignore_errors=True)
N=3
jax.profiler.start_trace(d)
for _ in range(N): jax.block_until_ready(f(p,o,x,w))
jax.profiler.stop_trace()
pd=_profile_data.ProfileData.from_file(sorted(glob.glob(d+"/**/*.xplane.pb", recursive=True))[-1])
cat=collections.Counter(); wall=None
def kind(n):
    if n.startswith("ynn_fusion") or n.startswith("dot"): return "matmul (YNN/dot)"
    if "cholesky" in n or "triangular" in n: return "LAPACK cholesky+trsm"
    if n.startswith("while") or n.startswith("ThunkExecutor") or n.startswith("end:"): return None
    if "Await" in n: return "waiting for the other thread"
    if "copy" in n: return "copy"
    return "elementwise/reduce fusions"
for plane in pd.planes:
    for line in plane.lines:
        if line.name == "python":
            for ev in line.events:
                if "block_until_ready" in ev.name: wall = (wall or 0) + ev.duration_ns
        if "Eigen" not in line.name: continue
        for ev in line.events:
            k = kind(ev.name)
            if k: cat[k] += ev.duration_ns
tot=sum(v for k, v in cat.items() if not k.startswith("waiting"))
print(f"{KIND} B={B}: wall per step {wall/N/1e6:.0f} ms (incl. profiler); thunk time summed over XLA's threads per step:")
for k,v in cat.most_common(): print(f"  {k:30s} {v/N/1e6:8.1f} ms  " + ("(not in the shares)" if k.startswith("waiting") else f"{100*v/tot:5.1f}%"))
