"""Packaging: envs/ and policies/ install inside the marl_net namespace, in a plain wheel too."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_plain_wheel_install_imports_envs_and_policies(tmp_path):
    wheel_dir, site = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheel_dir), str(ROOT)], check=True, capture_output=True)
    (wheel,) = wheel_dir.glob("marl_net-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "marl_net/envs/network_weights_v0.py" in names
    assert "marl_net/policies/synapse_policy.py" in names
    assert {"marl_net/observation_rows.cpp", "marl_net/policies/synapse_kernel.cpp"} <= set(names)  # C++ sources
    assert not any(n.startswith(("envs/", "policies/", "tests/")) for n in names)  # no generic top-level names
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    code = ("import json, marl_net, marl_net.envs.network_weights_v0 as e, marl_net.policies.synapse_policy as p;"
            "env = e.parallel_env(layers=(4, 5, 3)); env.reset(seed=0);"
            "print(json.dumps([marl_net.__file__, e.__file__, p.__file__, len(env.agents)]))")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True).stdout
    files = json.loads(out.strip().splitlines()[-1])
    assert all(f.startswith(str(site)) for f in files[:3]), files  # imported from the wheel, not the checkout
    assert files[3] == 9


def test_editable_install_maps_the_namespace():
    import marl_net.envs.network_weights_v0 as e
    import marl_net.policies.synapse_policy as p

    assert Path(e.__file__).resolve() == ROOT / "envs" / "network_weights_v0.py"
    assert Path(p.__file__).resolve() == ROOT / "policies" / "synapse_policy.py"
