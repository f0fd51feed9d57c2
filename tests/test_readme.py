"""The README's example runs as written, and .ci/run calls the README's test command verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_model_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert tuple(namespace["logits"].shape) == (2, 16, 1000)
    assert namespace["model"].decoder.layers[0].self_attention.sublayer.num_kv_heads == 2
    assert len(namespace["paper"].encoder.layers) == 6
    assert namespace["bert"].config.kind == "masked_lm"
    assert namespace["bert"].config.positional == "learned"


def test_ci_runs_the_readme_test_command():
    commands = re.findall(
        r"^([^#\s].*)$", re.search(r"```bash\n(.*?)```", README, flags=re.S).group(1), flags=re.M
    )
    main_job, tests, compare = commands
    assert "swapformer fit --config stdlib-tiny" in main_job
    assert compare.startswith("swapformer compare --config stdlib-tiny --vary ")
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()
