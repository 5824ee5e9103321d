"""pytest plugin for llama.cpp's server tests (tools/server/tests), loaded with `-p local_models`:
the suite's models come from the Hugging Face Hub, which this machine cannot reach.

- The chat preset (`tinyllama2`, stories260K) runs on the local model in COMPAT_MODEL
  (SmolLM2-135M-Instruct Q4_1): the same preset for llama-server and for strata.
- Every other server whose model only the Hub has is skipped when it starts, naming that model;
  so are tests that download files (`download_file`, e.g. the images of the vision tests).
- `ServerPreset.load_all` (the suite's pre-download of every preset) does nothing.
"""
import os

import pytest
import utils

MODEL = os.environ["COMPAT_MODEL"]


def _start(original):
    def start(self, *args, **kwargs):
        if self.model_hf_repo or self.model_url or self.mmproj_url:
            where = self.model_url or self.mmproj_url or f"{self.model_hf_repo} {self.model_hf_file or ''}".strip()
            pytest.skip(f"model only on the Hugging Face Hub: {where}")
        return original(self, *args, **kwargs)

    return start


def _local(original):
    def preset():
        server = original()
        server.model_hf_repo = None
        server.model_hf_file = None
        server.model_file = MODEL
        return server

    return staticmethod(preset)


def _no_download(*args, **kwargs):
    pytest.skip("downloads a file from the internet")


def _router():
    pytest.skip("llama-server's multi-model router mode (out of scope, as test_router.py)")


def pytest_configure(config):
    utils.ServerPreset.router = staticmethod(_router)
    utils.ServerPreset.load_all = staticmethod(lambda: None)
    utils.ServerPreset.tinyllama2 = _local(utils.ServerPreset.tinyllama2)
    utils.ServerProcess.start = _start(utils.ServerProcess.start)
    utils.download_file = _no_download
