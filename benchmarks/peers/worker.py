"""Worker process of the peer benchmark: builds one implementation and serves the runner's commands.

    <venv>/bin/python worker.py {jax,pcx,ngc}

``jax`` serves ``predcode`` and ``plain_jax`` (impl_jax.py), ``pcx`` serves ``pcx_loop`` and
``pcx_scan`` (impl_pcx.py), ``ngc`` serves ``ngc_scan`` and ``ngc_step`` (impl_ngc.py); predcode is
served by every module (impl_jax.build_predcode) so it can be timed under each venv's JAX.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import serve


def main() -> None:
    module = sys.argv[1]

    def build(name, spec, W0, x):
        if name.startswith("predcode") or module == "jax":
            import impl_jax

            return impl_jax.build(name, spec, W0, x)
        if module == "pcx":
            import impl_pcx

            return impl_pcx.build(name, spec, W0, x)
        if module == "ngc":
            import impl_ngc

            return impl_ngc.build(name, spec, W0, x)
        raise ValueError(f"module: expected jax, pcx or ngc, got {module!r}")

    serve(build)


if __name__ == "__main__":
    main()
