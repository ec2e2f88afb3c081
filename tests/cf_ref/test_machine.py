"""cf_ref.machine: the machine description benchmarks attach to their figures."""

import json
import os

import torch

from cf_ref.machine import cpu_model, machine_info, machine_summary


def test_machine_info_is_json_and_matches_torch():
    info = machine_info()
    json.dumps(info)
    assert info["torch"] == torch.__version__
    assert info["torch_threads"] == torch.get_num_threads()
    assert info["logical_cpus"] == os.cpu_count()
    assert info["gpu"] == ("none" if not torch.cuda.is_available() else torch.cuda.get_device_name())


def test_summary_names_cpu_and_torch():
    line = machine_summary()
    assert cpu_model() in line and torch.__version__ in line and "\n" not in line
