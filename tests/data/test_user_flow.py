"""A new user's flow from the README on a DFEW-layout fixture: prepare -> check -> eval across folds."""

import json

import pytest
from corpora_fixtures import build_dfew

from emorl.cli import main


@pytest.mark.e2e  # the whole CLI flow, ending with a tiny-model evaluation
def test_prepare_check_eval_across_folds(tmp_path, bank, tiny_model_dir, capsys):
    root = build_dfew(tmp_path / "DFEW", bank)
    manifest = tmp_path / "dfew-test.jsonl"
    assert main(["data", "prepare", "dfew", "--root", str(root), "--out", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert {r["fold"] for r in rows} == {1, 2, 3, 4, 5}

    # keep the test split of every fold, as a fold-wise evaluation would
    test_rows = [r for r in rows if r["split"] == "test"]
    test_manifest = tmp_path / "test.jsonl"
    test_manifest.write_text("".join(json.dumps(r) + "\n" for r in test_rows))

    check_dir = tmp_path / "check"
    assert main(["data", "check", str(test_manifest), "--out", str(check_dir), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "usable" in out
    clean = check_dir / "clean.jsonl"
    rejects = [json.loads(line) for line in (check_dir / "rejects.jsonl").read_text().splitlines()]
    n_clean = len(clean.read_text().splitlines())
    assert n_clean + len(rejects) == len(test_rows)  # nothing dropped without being listed

    ev = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                "--model",
                str(tiny_model_dir),
                "--manifest",
                str(clean),
                "--out",
                str(ev),
                "data.sampling=fixed",
                "data.num_frames=8",
                "data.frame_size=56",
                "eval.max_new_tokens=4",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    m = json.loads((ev / "metrics.json").read_text())
    folds = {r["fold"] for r in map(json.loads, clean.read_text().splitlines())}
    assert set(m["by_fold"]["folds"]) == {str(f) for f in folds}
    assert f"mean over {len(folds)} folds" in out
    mean_war = sum(f["war"] for f in m["by_fold"]["folds"].values()) / len(folds)
    assert abs(m["by_fold"]["mean"]["war"] - mean_war) < 1e-12
