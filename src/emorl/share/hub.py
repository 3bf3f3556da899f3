"""Upload an exported folder to the Hugging Face hub with ``huggingface_hub``."""

from __future__ import annotations

from pathlib import Path


def check_export(folder: Path) -> None:
    """An ``emorl export`` folder: a config, weights and the model card, and no emorl-only file."""
    missing = [n for n in ("config.json", "README.md") if not (folder / n).is_file()]
    if not any(folder.glob("*.safetensors")):
        missing.append("*.safetensors")
    if missing:
        raise FileNotFoundError(f"{folder}: not an `emorl export` folder (missing {', '.join(missing)})")
    extra = sorted(p.name for p in folder.iterdir() if p.name.startswith("emorl_"))
    if extra:
        raise ValueError(f"{folder}: holds emorl-only files ({', '.join(extra)}); export again with `emorl export`")


def push_to_hub(
    folder: str | Path,
    repo: str,
    *,
    private: bool = False,
    token: str | None = None,
    message: str = "Upload model exported with emorl",
) -> str:
    """Create ``repo`` (a model repository, ``org/name``; kept if it exists) and upload ``folder``
    in one commit; returns the repository's URL. ``token``: None uses huggingface_hub's login
    (``hf auth login``) or the HF_TOKEN environment variable."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ValueError(f"--push-to-hub {repo!r}: expected a repository id of the form org/name")
    check_export(folder)
    api = HfApi(token=token)
    url = api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(repo_id=repo, repo_type="model", folder_path=str(folder), commit_message=message)
    return str(url)
