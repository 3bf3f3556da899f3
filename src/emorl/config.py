"""One config schema (dataclasses), loaded from a YAML recipe with dotted command-line overrides.

    cfg = load_config("configs/r1-omni-tiny.yaml", ["grpo.steps=10", "sampling.temperature=0.9"])

Unknown keys are errors that name the key and list the known ones. ``save_run_config`` writes
the resolved config and the git revision next to every run.

One file on purpose (past 500 lines): the whole schema, its defaults and the rules that relate
its keys (renames, keys a stage does not use) are read in one place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from emorl.utils import atomic_write_text, git_revision


@dataclass
class DataConfig:
    train: str = ""  # manifest (JSONL) of the RL / SFT training split, or a mixture "a.jsonl:1,b.jsonl:2"
    # rows of data.train used: a split name, "all", or "" = "train" rows (a manifest holding one split is
    # used whole, unless it holds evaluation rows only: test, val, ood, ...)
    split: str = ""
    eval: list[str] = field(default_factory=list)  # manifests evaluated after `emorl sft` / `emorl train`
    # how frames are taken from a clip: native = the model family's own rules (Qwen: 2 frames per second,
    # aspect ratio kept, sides multiples of 28/32 within its pixel budget; parts: the checkpoint's frame count
    # at its vision encoder's size) | fixed = data.num_frames at segment middles, resized to data.frame_size
    sampling: str = "native"
    num_frames: int = 0  # fixed sampling: frames at segment middles (R1-Omni: 8); must stay 0 under native
    frame_size: int = 0  # fixed sampling: frames resized to frame_size^2 before the processor (0: their own size)
    modality: str = "video+audio"  # media in training prompts: video+audio | video | audio | text
    on_missing_audio: str = "error"  # error | silence | skip (recorded per sample)
    max_samples: int = 0  # 0 = all
    # degenerate media get a per-sample flag (data check, every load): fewer decoded frames than
    # min_frames, shorter than min_seconds, or a frame side below min_side pixels (0 disables a check)
    min_frames: int = 4
    min_seconds: float = 0.3
    min_side: int = 32
    exclude_flagged: bool = False  # drop flagged samples from training and evaluation (counted in the log)


@dataclass
class ModelConfig:
    path: str = ""  # local directory or hub id of a thinker / omni checkpoint
    dtype: str = "float32"  # float32 on CPU; bfloat16 on GPU
    device: str = "cpu"
    frame_pixels: int = 0  # 0 = from the checkpoint (emorl_model.json) or processor defaults
    freeze_vision: bool = False  # R1-Omni froze its encoders
    freeze_audio: bool = False
    lora_rank: int = 0  # >0: train LoRA adapters (peft) on the LLM instead of all weights
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: str = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    ref_device: str = ""  # reference model device ("" = same as model.device; "cpu" to off-load)
    master_weights: str = "auto"  # auto | float32 | none: float32 optimizer copies of bf16/fp16 trainable weights


@dataclass
class PromptConfig:
    recipe: str = "r1-omni"  # reward recipe (emorl.recipes.rewards.RECIPES): r1-omni | emo-r3 | emo-r3-tags | ...
    question: str = ""  # "" = the recipe's question (emorl.recipes.prompts.RECIPE_PROMPTS)
    format: str = ""  # "" = the recipe's format instruction
    with_options: bool = False  # append the dataset's label list (R1-Omni release: open vocabulary)
    # the model's label set, for predict / serve (a probability per class) and for options when a sample
    # has none; recorded from the training data when empty
    labels: list[str] = field(default_factory=list)


@dataclass
class GradingConfig:
    """How answers are read, the same in rewards, evaluation and serving (emorl.recipes.parse)."""

    # reproduce the paper's released grader exactly (R1-Omni: regex + case-sensitive string match;
    # EMO-R3: last \boxed{} lower-cased match) instead of emorl's answer grammar; see docs/papers.md
    strict_official: bool = False
    # extra answer words accepted for a label, e.g. [unhappy=sad]; by default an answer must use the
    # label word or its inflections (happiness, fearful, surprised, ...)
    answer_synonyms: list[str] = field(default_factory=list)


@dataclass
class SamplingConfig:
    max_new_tokens: int = 512  # R1-Omni: max_completion_length 512
    temperature: float = 1.0  # R1-Omni: 1.0
    top_p: float = 1.0
    top_k: int = 0
    # rollout decoder: auto (CUDA graph on CUDA; on CPU static for G > 1, else dynamic; FSDP2: dynamic)
    # | dynamic | static | graph
    decode: str = "auto"


@dataclass
class GRPOConfig:
    steps: int = 100
    prompts_per_step: int = 8  # distinct clips per step
    completions_per_prompt: int = 8  # G (R1-Omni: 8)
    micro_batch_rows: int = 64  # completion rows per forward/backward; accumulation is derived
    lr: float = 1e-6  # R1-Omni: 1e-6
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    warmup_steps: int = 0
    loss_type: str = "grpo"  # grpo | dr_grpo | dapo | gspo
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    beta: float = 0.04  # KL coefficient (R1-Omni / TRL 0.14: 0.04); 0 disables the reference model
    kl_estimator: str = "k3"  # k1 | k3 | low_var_kl (k3 clamped to 10, as verl / EasyR1; EMO-R3)
    # dual-clip PPO (Ye et al. 2020; verl clip_ratio_c): for negative advantages the per-token loss is
    # capped at -A * dual_clip_c; 0 = off, else > 1 (EMO-R3: 3.0)
    dual_clip_c: float = 0.0
    advantage_scale: str = "group"  # group | batch | none
    advantage_eps: float = 1e-4
    sample_every: int = 10  # log a few completions with their rewards every N steps
    epochs_per_rollout: int = 1  # optimisation passes over one rollout batch (old log-probs kept)
    dynamic_sampling: bool = False  # drop groups whose rewards all tie and refill (DAPO)
    max_refill_rounds: int = 4  # dynamic sampling: extra rollout rounds per step at most
    save_every: int = 0  # checkpoint every N steps (0: only at the end / on interrupt)
    keep_checkpoints: int = 2
    resume: bool = False  # continue from out/checkpoints/latest
    max_nonfinite_steps: int = 3  # consecutive skipped (non-finite) steps before the run stops
    gradient_checkpointing: bool = False
    # none (replicated, all-reduced gradients) | fsdp2 (sharded parameters, grads, AdamW states) |
    # zero2 | zero3 (DeepSpeed ZeRO: emorl.rl.zero)
    sharding: str = "none"


@dataclass
class RewardConfig:
    """How a recipe's reward components are weighted (``emorl.recipes.rewards``)."""

    # component (or product "a*b") -> weight, overriding the recipe's defaults for the components
    # named; e.g. {accuracy: 0.8, coherence: 0.1}; on the command line reward.weights.accuracy=0.8 or
    # reward.weights=accuracy=0.8,format=0.2. Unknown components are errors.
    weights: dict[str, float] = field(default_factory=dict)


@dataclass
class SFTConfig:
    target: str = "trace"  # trace (cold-start reasoning) | label (<answer> only, R1-Omni's MAFW-DFEW-SFT)
    epochs: float = 5.0  # R1-Omni cold start: 5 (steps = round(epochs x samples / samples_per_step))
    lr: float = 2e-5  # R1-Omni cold start: 2e-5, cosine decay
    samples_per_step: int = 16  # samples per optimizer step over all processes (R1-Omni: global batch 16)
    # samples per forward/backward on one process (capped at its share of a step); accumulation is derived
    micro_batch_samples: int = 16
    group_by_length: bool = True  # micro-batches of similar total length (less padding; same update)
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    sharding: str = "none"  # none | fsdp2 | zero2 | zero3, as grpo.sharding
    save_every: int = 0  # checkpoint every N steps (0: only on interruption)
    keep_checkpoints: int = 2
    resume: bool = False  # continue from out/checkpoints/latest
    max_nonfinite_steps: int = 3
    val: str = ""  # validation manifest (its val rows; a one-split manifest whole); "" = none
    val_every: int = 0  # validate every N steps (and after the last); 0 = after the last step only
    val_generate: bool = False  # also WAR / UAR / format rate of greedy answers (eval.max_new_tokens)
    val_metric: str = "loss"  # what out/best_model keeps the best of: loss | war | uar | format_rate


@dataclass
class TracesConfig:
    """``emorl traces generate``: a teacher's reasoning traces for a corpus (emorl.traces)."""

    per_clip: int = 4  # completions sampled per clip (k)
    keep_per_clip: int = 2  # traces kept per clip at most (deduplicated, passing the filters)
    temperature: float = 1.0  # sampling temperature (top_p / top_k / max_new_tokens: sampling.*)
    rationalize: bool = True  # clips with no kept trace: one label-conditioned round (STaR), marked as such
    require_cue: bool = True  # reject reasoning that cites no cue phrase of the lexicons
    lexicons: list[str] = field(default_factory=lambda: ["en"])  # cue lexicons (emorl.eval.attribution)
    max_per_class: int = 0  # traces kept per class at most (0: no cap)
    balance: bool = False  # cap every class at the smallest class's count of kept traces
    clips_per_batch: int = 8  # clips per generate call (each sampled per_clip times)


@dataclass
class EvalConfig:
    batch_size: int = 32
    max_new_tokens: int = 512  # R1-Omni: 512; the demo's tiny model uses 80
    split: str = ""  # rows evaluated: a split name, "all", or "" = "test" rows (a one-split manifest whole)


@dataclass
class ReflectionConfig:
    """EMO-R3's reflective reward: extra no-gradient generation passes of the current policy over
    its own reasoning each GRPO step (see emorl.rl.reflection; wired with make_reflection)."""

    enabled: bool = False  # EMO-R3 always reflects; the emo-r3 configs turn it on
    grounding: str = "joint"  # none | joint (clip vs stage 1) | per_modality (joint + video-only + audio-only)
    temperature: float = 0.6  # EMO-R3: validation decoding (temperature 0.6, top_p 0.95, n=1)
    top_p: float = 0.95
    max_new_tokens: int = 16  # answers are one word / yes-no; EMO-R3 allowed max_response_length (2048)
    batch_size: int = 64  # reflection prompts per generate call (EMO-R3: 1024)
    # who answers (emorl.rl.judge): policy (EMO-R3: the current policy) | frozen (a frozen copy of model.path) |
    # a checkpoint directory (another model)
    judge: str = "policy"
    # sample (one sampled answer, read as words: EMO-R3) | logprob (one scoring pass over the candidate
    # answers; the expected score, e.g. 0.5 + (P(yes) - P(no)) / 2)
    scoring: str = "sample"


@dataclass
class CVConfig:
    """``emorl cv`` / ``emorl protocol``: what each fold trains (emorl.cv)."""

    stages: list[str] = field(default_factory=lambda: ["grpo"])  # sft and/or grpo, in that order
    sft_train: str = ""  # SFT manifest for every fold (e.g. EMER cold-start traces); "" = the fold's training rows
    folds: list[str] = field(default_factory=list)  # folds to run; empty = every fold


@dataclass
class ProtocolConfig:
    """``emorl protocol``: a paper's evaluation table in one command (emorl.cv)."""

    # manifests of corpora with official folds (prepared with --split all): trained and tested per fold
    in_domain: list[str] = field(default_factory=list)
    ood: list[str] = field(default_factory=list)  # manifests evaluated whole (their test rows) with every fold's model
    reference: str = ""  # published numbers printed beside the table: r1-omni


@dataclass
class DemoConfig:
    """Sizes of the embedded demo (synthetic world + tiny model); see configs/demo.yaml."""

    train: int = 1200
    coldstart: int = 240
    test: int = 280
    ood: int = 280
    pretrain: int = 1200  # clips for perception pretraining of the towers (0 = none: random-init towers)
    pretrain_epochs: float = 8.0
    pretrain_lr: float = 1e-3
    workers: int = 2
    label_sft_epochs: float = 3.0
    label_sft_lr: float = 1e-3
    hidden: int = 128  # tiny thinker shape
    layers: int = 4
    vocab_size: int = 1024
    # the tiny model's family (emorl.models.registry): qwen2.5-omni | qwen3-omni (data.frame_size a multiple of
    # 32, e.g. 96) | qwen2.5-vl | qwen3-vl (video prompts) | parts (LLM + SigLIP + Whisper encoder + projectors)
    family: str = "qwen2.5-omni"


@dataclass
class RunConfig:
    out: str = "runs/run"
    seed: int = 42
    report_to: list[str] = field(default_factory=list)  # trackers besides metrics.jsonl: tensorboard, wandb
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    grading: GradingConfig = field(default_factory=GradingConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    traces: TracesConfig = field(default_factory=TracesConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    reflection: ReflectionConfig = field(default_factory=ReflectionConfig)
    cv: CVConfig = field(default_factory=CVConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)


class ConfigError(ValueError):
    pass


RENAMED = {"sft.batch_size": "sft.samples_per_step"}  # old key -> new key (an error naming the new one)


def _set(obj: Any, dotted: str, value: Any, where: str) -> None:
    if dotted in RENAMED:
        raise ConfigError(f"{where}: {dotted!r} was renamed {RENAMED[dotted]!r} (same meaning); set that instead")
    parts = dotted.split(".")
    for i, name in enumerate(parts):
        names = [f.name for f in dataclasses.fields(obj)]
        if name not in names:
            path = ".".join(parts[: i + 1])
            raise ConfigError(f"{where}: unknown config key {path!r}; known at this level: {', '.join(names)}")
        hint = get_type_hints(type(obj))[name]
        if i == len(parts) - 1:
            setattr(obj, name, _coerce(value, hint, dotted, where))
        elif getattr(hint, "__origin__", None) is dict:  # a mapping's entry: key.sub.<entry>=value
            entry = ".".join(parts[i + 1 :])
            getattr(obj, name)[entry] = _coerce(value, hint.__args__[1], dotted, where)
            return
        else:
            obj = getattr(obj, name)
            if not dataclasses.is_dataclass(obj):
                raise ConfigError(f"{where}: {'.'.join(parts[: i + 1])!r} is a value, not a section")


def _coerce(value: Any, hint: Any, key: str, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        raise ConfigError(f"{where}: {key!r} is a section; set its keys, e.g. {key}.<name>=...")
    origin = getattr(hint, "__origin__", None)
    if origin is dict:
        return _coerce_mapping(value, hint.__args__[1], key, where)
    if origin is list:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key!r} expects a list, got {value!r}")
        return [str(v) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes"):
            return True
        if str(value).lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"{where}: {key!r} expects true/false, got {value!r}")
    try:
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return hint(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {key!r} expects {hint.__name__}, got {value!r}") from None


def _coerce_mapping(value: Any, vhint: Any, key: str, where: str) -> dict:
    """A whole mapping: a YAML / JSON mapping, a list of ``name=value`` strings or one
    comma-separated ``name=value,...`` string (the command-line form)."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if isinstance(value, list):
        pairs = {}
        for item in value:
            name, sep, raw = str(item).partition("=")
            if not sep or not name.strip():
                raise ConfigError(f"{where}: {key!r} expects name=value entries, got {item!r}")
            pairs[name.strip()] = yaml.safe_load(raw)
        value = pairs
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key!r} expects a mapping (name: value), got {value!r}")
    return {str(k): _coerce(v, vhint, f"{key}.{k}", where) for k, v in value.items()}


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _flatten(v, key + ".")
        else:
            out.append((key, v))
    return out


CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def packaged_config(name: str) -> Path:
    """Path of a recipe shipped with emorl (``configs/NAME.yaml``)."""
    p = CONFIG_DIR / f"{name}.yaml"
    if not p.is_file():
        known = ", ".join(sorted(x.stem for x in CONFIG_DIR.glob("*.yaml")))
        raise ConfigError(f"no packaged config {name!r}; known: {known}")
    return p


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, *, base: RunConfig | None = None
) -> RunConfig:
    """Defaults (or ``base``) <- YAML recipe (``path``: a file, or the name of a packaged recipe) <-
    ``key.sub=value`` overrides."""
    cfg = base if base is not None else RunConfig()
    if path:
        p = Path(path)
        if not p.exists() and "/" not in str(path) and not str(path).endswith(".yaml"):
            p = packaged_config(str(path))
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: invalid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level")
        for key, value in _flatten(data):
            _set(cfg, key, value, str(p))
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r}: expected key.sub=value")
        key, raw = ov.split("=", 1)
        _set(cfg, key.strip(), yaml.safe_load(raw) if raw else "", f"override {ov!r}")
    return cfg


def to_dict(cfg: RunConfig) -> dict:
    return dataclasses.asdict(cfg)


def run_config_yaml(cfg: RunConfig) -> str:
    """The resolved config with the git revision, as saved with every run and inside its model."""
    return yaml.safe_dump({"git_revision": git_revision(), **to_dict(cfg)}, sort_keys=False)


def save_run_config(cfg: RunConfig, out_dir: str | Path) -> None:
    """Write the resolved config and the git revision to ``out_dir/config.yaml``."""
    atomic_write_text(Path(out_dir) / "config.yaml", run_config_yaml(cfg))


# ------------------------------------------------------------------------------ a run's own settings
RUN_CONFIG_FILE = "emorl_config.yaml"  # the resolved run config, saved inside every trained model folder
# what describes how a model reads its inputs and writes its answers: read back from the model's saved
# run config by eval, predict, analyze, report and serve
INFERENCE_KEYS = (
    "data.sampling",
    "data.num_frames",
    "data.frame_size",
    "data.modality",
    "data.on_missing_audio",
    "model.frame_pixels",
    "prompt.",
    "grading.",
    "sampling.max_new_tokens",
    "sampling.temperature",
    "sampling.top_p",
    "sampling.top_k",
    "eval.max_new_tokens",
)


def is_inference_key(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in INFERENCE_KEYS)


def saved_run_config(model: str | Path) -> tuple[dict, Path] | None:
    """(resolved config dict, its file) saved with a model: ``MODEL/emorl_config.yaml``, or the run's
    ``config.yaml`` beside a run's ``model`` folder; None for a model without one (e.g. from the hub)."""
    d = Path(model).expanduser()
    candidates = [d / RUN_CONFIG_FILE] + ([d.parent / "config.yaml"] if d.name == "model" else [])
    for p in candidates:
        if p.is_file():
            try:
                data = yaml.safe_load(p.read_text()) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"{p}: invalid YAML: {e}") from None
            if not isinstance(data, dict):
                raise ConfigError(f"{p}: expected a mapping at the top level")
            return data, p
    return None


def _get(cfg: RunConfig, dotted: str) -> Any:
    obj: Any = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def config_for_model(
    model: str | Path, path: str | Path | None = None, overrides: list[str] | None = None
) -> tuple[RunConfig, list[str]]:
    """The config a command that *uses* a trained model runs with, and notes for the user.

    Defaults <- the model's saved run config (its ``INFERENCE_KEYS``: prompt recipe and answer
    style, label set, frames, frame size, modality, sampling, answer lengths) <- ``path`` <-
    ``overrides``. A note names every setting that ends up different from what the model was
    trained with; without a saved run config the recipe's and the model's own defaults apply.
    """
    cfg, notes, trained = RunConfig(), [], {}
    saved = saved_run_config(model)
    if saved is None:
        notes.append(f"{model}: no saved run config; using the recipe's settings and the model's own preprocessing")
    else:
        data, src = saved
        if isinstance(data.get("data"), dict) and "sampling" not in data["data"]:
            # saved before data.sampling existed: frames were always data.num_frames at segment middles
            data = {**data, "data": {**data["data"], "sampling": "fixed"}}
        for key, value in _flatten({k: v for k, v in data.items() if k != "git_revision"}):
            if is_inference_key(key):
                try:
                    _set(cfg, key, value, str(src))
                except ConfigError as e:  # a key of another emorl version: said, not fatal
                    notes.append(f"ignored a saved setting: {e}")
                else:
                    trained[key] = _get(cfg, key)
    cfg = load_config(path, overrides, base=cfg)
    for key, was in trained.items():
        now = _get(cfg, key)
        if now != was:
            notes.append(f"{key}={now!r} differs from the model's training setting {was!r}")
    return cfg, notes


# ------------------------------------------------------------------------------ settings a command ignores
# the settings each stage reads, as key prefixes ("x." = the whole section); a setting outside every
# stage of a command is never read by it
STAGE_READS: dict[str, tuple[str, ...]] = {
    "sft": ("out", "seed", "report_to", "data.", "model.", "prompt.", "grading.", "sampling.", "sft.", "eval."),
    "grpo": (
        "out",
        "seed",
        "report_to",
        "data.",
        "model.",
        "prompt.",
        "grading.",
        "sampling.",
        "grpo.",
        "reflection.",
        "eval.",
    ),
    "traces": ("seed", "data.", "model.", "prompt.", "grading.", "sampling.", "traces."),
    "eval": (
        "data.",
        "model.path",
        "model.dtype",
        "model.device",
        "model.frame_pixels",
        "prompt.",
        "grading.",
        "eval.",
    ),
    "cv": ("out", "cv."),
    "protocol": ("out", "cv.", "protocol."),
}
# ... except these, which the stage does not read
STAGE_SKIPS: dict[str, tuple[str, ...]] = {
    "sft": ("model.ref_device", "sampling.decode"),
    "traces": (
        "model.path",
        "model.lora_",
        "model.freeze_",
        "model.master_weights",
        "model.ref_device",
        "sampling.temperature",
        "sampling.decode",
    ),
}
# settings read only when another one says so: (prefix, stage, condition, what turns it on)
ONLY_IF: tuple[tuple[str, str, Any, str], ...] = (
    ("model.lora_", "*", lambda c: c.model.lora_rank > 0, "model.lora_rank > 0"),
    ("model.ref_device", "grpo", lambda c: c.grpo.beta > 0, "grpo.beta > 0"),
    ("sft.val_", "sft", lambda c: bool(c.sft.val), "sft.val"),
    ("reflection.", "grpo", lambda c: c.reflection.enabled, "reflection.enabled=true"),
    ("grpo.max_refill_rounds", "grpo", lambda c: c.grpo.dynamic_sampling, "grpo.dynamic_sampling=true"),
    ("cv.sft_train", "*", lambda c: "sft" in c.cv.stages, "sft in cv.stages"),
)


def _reads(stage: str, key: str, cfg: RunConfig) -> bool:
    def match(prefix: str) -> bool:
        return key == prefix or (prefix.endswith((".", "_")) and key.startswith(prefix))

    if not any(map(match, STAGE_READS[stage])) or any(map(match, STAGE_SKIPS.get(stage, ()))):
        return False
    return all(
        cond(cfg)
        for prefix, where, cond, _ in ONLY_IF
        if where in ("*", stage) and match(prefix) and key not in ("reflection.enabled",)
    )


def unused_settings(cfg: RunConfig, stages: list[str] | tuple[str, ...]) -> list[str]:
    """``key=value`` for every setting that differs from its default and that none of ``stages``
    (keys of ``STAGE_READS``) reads, e.g. ``grpo.lr`` for ``emorl sft`` or ``model.lora_alpha``
    without LoRA. A command reports them (``report_unused``) instead of silently ignoring them."""
    default = dict(_flatten(to_dict(RunConfig())))
    return [
        f"{k}={v}"
        for k, v in _flatten(to_dict(cfg))
        if v != default.get(k) and not any(_reads(s, k, cfg) for s in stages)
    ]


def report_unused(cfg: RunConfig, stages: list[str] | tuple[str, ...], command: str) -> list[str]:
    """Print (stderr) the settings ``emorl <command>`` does not use (``unused_settings``); a note, not
    an error, since one recipe file holds every stage's settings (configs/r1-omni.yaml: sft.*,
    grpo.*, protocol.*). Returns them."""
    import sys

    unused = unused_settings(cfg, stages)
    if unused:
        print(
            f"[emorl] note: emorl {command} does not use these settings (changed from their defaults; ignored): "
            + ", ".join(unused),
            file=sys.stderr,
        )
    return unused
