"""A tiny checkpoint written in HumanOmni's key layout and config format (tiny Qwen2, SigLIP,
Whisper, BERT, AllInOne(Small) with timm's RegStage, BERT gate) loads into the parts family, and
its logits equal a reference forward that follows HumanOmni's published code
(``humanomni_arch.py``: encode_images_or_videos, encode_audios, get_2dPool,
prepare_inputs_labels_for_multimodal with negative-id splicing; ``mm_utils.py``:
expand2square, tokenizer_multimodal_token; ``projector.py``: AllInOne / AllInOneSmall)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

timm = pytest.importorskip("timm", reason="timm (test extra) is the reference for HumanOmni's RegStage")
einops = pytest.importorskip("einops", reason="einops (test extra) reproduces HumanOmni's rearranges")

VIDEO, AUDIO = -201, -202  # HumanOmni's MODAL_INDEX_MAP
INSTRUCTIONS = ["which emotion is in the video?", "the face, the voice: which emotion?"]


class RefAllInOne(nn.Module):
    """HumanOmni's AllInOne (small=False) / AllInOneSmall (small=True), written from projector.py."""

    def __init__(self, c: int, h: int, small: bool):
        super().__init__()
        from timm.layers import LayerNorm2d
        from timm.models.regnet import RegStage

        depth, pad = (2, (1, 0, 0)) if small else (4, (1, 1, 1))

        def stage(cin):
            return RegStage(
                depth=depth, in_chs=cin, out_chs=h, stride=1, dilation=1, act_layer=nn.SiLU, norm_layer=LayerNorm2d
            )

        def mlp(cin):
            return nn.Sequential(nn.Linear(cin, h), nn.GELU(), nn.Linear(h, h))

        for b in ("video", "body"):
            setattr(self, f"s1_{b}", stage(c))
            setattr(self, f"sampler_{b}", nn.Sequential(nn.Conv3d(h, h, (2, 2, 2), (1, 2, 2), pad), nn.SiLU()))
            setattr(self, f"s2_{b}", stage(h))
            setattr(self, f"readout_{b}", mlp(h))
        self.mlp_2xgelu_face = nn.Sequential(nn.Linear(c, h), nn.GELU(), nn.Linear(h, h))

    def branch(self, x, b):
        t = x.size(1)
        hw = int(x.size(2) ** 0.5)
        x = einops.rearrange(x, "b t (h w) d -> b d t h w", h=hw, w=hw)
        x = einops.rearrange(x, "b d t h w -> (b t) d h w")
        x = getattr(self, f"s1_{b}")(x)
        x = einops.rearrange(x, "(b t) d h w -> b d t h w", t=t)
        x = getattr(self, f"sampler_{b}")(x)
        x = x[:, :, :-1, :, :]
        new_t = x.size(2)
        x = einops.rearrange(x, "b d t h w -> (b t) d h w")
        x = getattr(self, f"s2_{b}")(x)
        x = einops.rearrange(x, "(b t) d h w -> b (t h w) d", t=new_t)
        return getattr(self, f"readout_{b}")(x)

    def forward(self, video, body, face):
        return self.branch(video, "video"), self.branch(body, "body"), self.mlp_2xgelu_face(face)


def ref_2d_pool(feat, side):
    """HumanOmni's get_2dPool(stride=2)."""
    t, _, d = feat.shape
    feat = feat.view(t, side, side, -1).permute(0, 3, 1, 2).contiguous()
    feat = nn.functional.interpolate(feat, size=[math.ceil(side / 2)] * 2, mode="bilinear")
    return feat.permute(0, 2, 3, 1).reshape(t, -1, d)


def ref_slow_fast(image_features):
    """HumanOmni's SFDynamicCompressor.forward (HumanOmni repo only; R1-Omni comments it out)."""
    w = int(math.sqrt(image_features.shape[1]))
    x = einops.rearrange(image_features, "t (r w) h -> t r w h", r=w)
    t, h, w, c = x.shape
    x = x.unsqueeze(0)
    fast = nn.functional.avg_pool2d(x.permute(0, 1, 4, 2, 3).view(t, c, h, w), 2, 2)
    fast = fast.view(t, c, -1).permute(0, 2, 1).view(1, t, -1, c).view(1, -1, c)
    index = torch.arange(1, t, 4)
    if len(index) == 0:
        index = torch.tensor([0])
    slow = x[:, index, :, :, :].view(1, -1, c)
    return torch.cat([fast, slow], dim=1)[0]


class RefHumanOmni:
    """The modules of a HumanOmniQwen2ForCausalLM and its forward, following humanomni_arch.py."""

    def __init__(self, parts, small: bool, compressor: bool, seed: int = 1):
        from transformers import Qwen2Config, Qwen2ForCausalLM, WhisperForAudioClassification

        from emorl.models.parts.build import load_audio, load_fusion, load_vision

        torch.manual_seed(seed)
        self.vision = load_vision(parts["vision"])[0].eval()
        encoder = load_audio(parts["audio"])[0]
        wcfg = encoder.config
        self.audio = WhisperForAudioClassification(wcfg).eval()  # HumanOmni's tower class; only .encoder is used
        self.audio.encoder.load_state_dict(encoder.state_dict())
        self.bert, self.bert_tok = load_fusion(parts["bert"])
        self.llm = Qwen2ForCausalLM(
            Qwen2Config(
                vocab_size=512,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                tie_word_embeddings=True,
            )
        ).eval()
        c, h = self.vision.config.hidden_size, 32
        self.projector = RefAllInOne(c, h, small)
        self.audio_projector = nn.Sequential(nn.Linear(wcfg.d_model, h), nn.GELU(), nn.Linear(h, h))
        self.bert_gate = nn.Sequential(nn.Linear(self.bert.config.hidden_size, 3584), nn.GELU(), nn.Linear(3584, 3))
        self.compressor = (
            nn.ModuleDict({"vlm_query_projector": nn.Linear(c, 256), "vlm_key_projector": nn.Linear(c, 256)})
            if compressor
            else None
        )
        for m in (self.projector, self.audio_projector, self.bert_gate):
            for p in m.parameters():  # away from zero-init so every branch matters
                nn.init.normal_(p, std=0.3)
        nn.init.normal_(self.bert_gate[2].weight, std=0.01)  # unsaturated branch weights
        self.side = self.vision.config.image_size // self.vision.config.patch_size

    def state_dict(self) -> dict[str, torch.Tensor]:
        """HumanOmni's key layout (transformers 4 SigLIP keys keep their vision_model. level)."""
        out = {k: v for k, v in self.llm.state_dict().items() if k != "lm_head.weight"}  # tied: not saved
        parts = {
            "model.vision_tower.vision_tower.vision_model.": self.vision,
            "model.audio_tower.audio_tower.": self.audio,
            "model.mm_projector.": self.projector,
            "model.audio_projector.": self.audio_projector,
            "model.bert_model.": self.bert,
            "model.bert_gate.": self.bert_gate,
        }
        if self.compressor is not None:
            parts["model.feature_compressor."] = self.compressor
        for prefix, module in parts.items():
            out.update({prefix + k: v for k, v in module.state_dict().items()})
        return {k: v.clone().contiguous() for k, v in out.items()}

    @torch.no_grad()
    def encode_video(self, frames, prompt):
        feats = self.vision(frames, output_hidden_states=True).hidden_states[-2]
        video = einops.rearrange(feats, "(b t) n h -> b t n h", b=1)
        v, b, f = self.projector(video, video, feats)
        f = einops.rearrange(f, "(b t) n h -> b t n h", b=1)
        probs = torch.softmax(self.bert_gate(self.bert(**prompt).last_hidden_state[:, 0]), dim=1)
        face = ref_2d_pool(f[0], self.side).flatten(0, 1)
        feat = v[0] * probs[0][0] + b[0] * probs[0][1] + face * probs[0][2]
        if self.compressor is not None:
            feat = ref_slow_fast(einops.rearrange(feat, "(t n) h -> t n h", t=frames.shape[0]))
        return feat

    @torch.no_grad()
    def encode_audio(self, features):
        x = self.audio.encoder(features, return_dict=True).last_hidden_state.permute(0, 2, 1).contiguous()
        x = nn.functional.avg_pool1d(x, kernel_size=3, stride=3).permute(0, 2, 1).contiguous()
        return self.audio_projector(x)

    @torch.no_grad()
    def logits(self, ids: list[int], video_feat, audio_feat):
        """prepare_inputs_labels_for_multimodal for one sample, then the Qwen2 forward."""
        embed = self.llm.model.embed_tokens
        cur, parts = torch.tensor(ids), []
        while True:
            where = torch.where((cur == VIDEO) | (cur == AUDIO))[0]
            if where.numel() == 0:
                break
            i = where[0]
            parts += [embed(cur[:i]), video_feat if cur[i] == VIDEO else audio_feat[0]]
            cur = cur[i + 1 :]
        parts.append(embed(cur))
        return self.llm(inputs_embeds=torch.cat(parts)[None]).logits[0]


def ho_prompt(tok, instruct: str) -> list[int]:
    """mm_infer's prompt: chat template, X start/end wrappers, tokenizer_multimodal_token."""
    message = [{"role": "user", "content": "<video>\n<audio>" + "\n" + instruct}]
    prompt = tok.apply_chat_template(message, tokenize=False, add_generation_prompt=True)
    prompt = prompt.replace("<video>", "<vi_start><video><vi_end>").replace("<audio>", "<au_start><audio><au_end>")
    chunks: list = [prompt]
    for tag, idx in (("<audio>", AUDIO), ("<video>", VIDEO)):
        new = []
        for c in chunks:
            if isinstance(c, str):
                pieces = c.split(tag)
                new += [x for pair in zip(pieces, [idx] * len(pieces)) for x in pair][:-1]
            else:
                new.append(c)
        chunks = new
    ids: list[int] = []
    for c in chunks:
        ids += tok(c, add_special_tokens=False).input_ids if isinstance(c, str) else [c]
    return ids


def ho_frames(frames: np.ndarray, image_processor) -> torch.Tensor:
    """process_video with aspect_ratio='pad': expand2square with the mean colour, then preprocess."""
    from PIL import Image

    bg = tuple(int(x * 255) for x in image_processor.image_mean)
    out = []
    for f in frames:
        im = Image.fromarray(f)
        w, h = im.size
        sq = Image.new(im.mode, (max(w, h),) * 2, bg)
        sq.paste(im, (0, (w - h) // 2) if w > h else ((h - w) // 2, 0))
        out.append(sq)
    return image_processor.preprocess(out, return_tensors="pt")["pixel_values"]


def write_humanomni(tmp_path, small: bool, compressor: bool):
    """Tower / BERT folders, the reference model and its checkpoint folder (config.json in
    HumanOmni's format, model.safetensors in its key layout, the Qwen2 tokenizer)."""
    from safetensors.torch import save_file
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    from emorl.models.parts.tiny import TinyPartsShape, write_tiny_parts

    # AllInOneSmall needs an even patch grid (4x4), AllInOne an odd one (5x5)
    shape = TinyPartsShape(image_size=32 if small else 40)
    parts = write_tiny_parts(tmp_path / "parts", shape, bert=True)
    if not small:  # write_tiny_parts' SigLIP saves at 32: rewrite at 40
        v = SiglipVisionModel(
            SiglipVisionConfig(
                hidden_size=24,
                intermediate_size=48,
                num_hidden_layers=3,
                num_attention_heads=2,
                image_size=40,
                patch_size=8,
            )
        )
        v.save_pretrained(parts["vision"])
        SiglipImageProcessor(size={"height": 40, "width": 40}).save_pretrained(parts["vision"])
    ref = RefHumanOmni(parts, small, compressor)
    src = tmp_path / "humanomni"
    src.mkdir()
    save_file(ref.state_dict(), str(src / "model.safetensors"))
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(parts["llm"]).save_pretrained(src)
    cfg = ref.llm.config.to_dict()
    cfg.update(
        architectures=["HumanOmniQwen2ForCausalLM"],
        model_type="HumanOmni_qwen2",
        mm_vision_tower=str(parts["vision"]),
        mm_audio_tower=str(parts["audio"]),
        mm_hidden_size=24,
        mm_projector_type="all_in_one_small" if small else "all_in_one",
        mm_audio_projector_type="mlp2x_gelu",
        audio_hidden_size=16,
        mm_vision_select_layer=-2,
        mm_vision_select_feature="patch",
        mm_use_x_start_end=True,
        num_frames=8,
        image_aspect_ratio="pad",
        use_mm_proj=True,
        tune_mm_mlp_adapter=False,
        mm_tunable_parts="mm_mlp_adapter,audio_projector,mm_language_model",
        tokenizer_model_max_length=2048,
        tokenizer_padding_side="right",
        hyper_layers=[15, 22],
    )
    (src / "config.json").write_text(json.dumps(cfg, default=str))
    return parts, ref, src


@pytest.mark.parametrize("small,compressor", [(True, False), (False, True)], ids=["r1-omni", "humanomni-7b"])
def test_humanomni_checkpoint_matches_reference(tmp_path, small, compressor):
    from emorl.models.parts.build import load_parts_model
    from emorl.models.parts.humanomni import convert_humanomni

    parts, ref, src = write_humanomni(tmp_path, small, compressor)
    out = convert_humanomni(src, tmp_path / "converted", bert=parts["bert"])
    record = json.loads((out / "emorl_build.json").read_text())
    assert record["towers"] == "external" and record["compressor"] == ("slow_fast" if compressor else "none")
    model, proc = load_parts_model(out)
    model.eval()
    # transformers 4's SiglipImageProcessor (HumanOmni's) resized with PIL: the PIL backend, kept on reload
    assert type(proc.image_processor).__name__ == "SiglipImageProcessorPil" and proc.settings.pad_to_square
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 255, (8, 30, 44, 3), dtype=np.uint8) for _ in INSTRUCTIONS]
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (12000, 30000)]  # shorter / longer than 1 s
    texts = [
        proc.apply_chat_template(
            [{"role": "user", "content": [{"type": "video"}, {"type": "audio"}, {"type": "text", "text": q}]}]
        )
        for q in INSTRUCTIONS
    ]
    enc = proc(texts, videos=clips, audio=waves, fusion_text=INSTRUCTIONS)
    with torch.no_grad():
        got = model(**enc).logits
    for i, q in enumerate(INSTRUCTIONS):
        pixels = ho_frames(clips[i], proc.image_processor)
        assert torch.equal(pixels, enc["pixel_values_videos"][i])
        feats = proc.feature_extractor(waves[i], sampling_rate=16000, return_tensors="pt")["input_features"]
        prompt = ref.bert_tok([q], return_tensors="pt", padding=True, truncation=True, add_special_tokens=True)
        vfeat, afeat = ref.encode_video(pixels, prompt), ref.encode_audio(feats)
        with torch.no_grad():  # the media features themselves, before the LLM dilutes any difference
            gate = model.model.get_fusion_weights(
                enc["fusion_input_ids"][i : i + 1], enc["fusion_attention_mask"][i : i + 1]
            )
            assert gate.min() > 0.05, "every branch must weigh in for the comparison to test it"
            torch.testing.assert_close(
                model.model.get_video_features(pixels[None], gate)[0], vfeat, atol=1e-5, rtol=1e-5
            )
            torch.testing.assert_close(model.model.get_audio_features(feats), afeat, atol=1e-5, rtol=1e-5)
        ids = ho_prompt(proc.tokenizer, q)
        want = ref.logits(ids, vfeat, afeat)
        # same text tokens around the media (placeholder runs in place of the negative ids)
        row = enc["input_ids"][i][enc["attention_mask"][i].bool()]
        expanded = [
            t
            for x in ids
            for t in (
                [proc.token_id("video")] * len(vfeat)
                if x == VIDEO
                else [proc.token_id("audio")] * afeat.shape[1]
                if x == AUDIO
                else [x]
            )
        ]
        assert row.tolist() == expanded
        assert proc.video_tokens(8) == len(vfeat) and proc.audio_tokens() == afeat.shape[1]
        have = got[i][enc["attention_mask"][i].bool()][:, : want.shape[-1]]
        torch.testing.assert_close(have, want, atol=2e-5, rtol=1e-5)


def test_checkpoint_towers_are_used_when_asked(tmp_path):
    """towers='checkpoint' takes the tower copies stored in the checkpoint (perturbed here), towers=
    'external' the tower folders (HumanOmni's own loader)."""
    from safetensors.torch import load_file, save_file

    from emorl.models.parts.build import load_parts_model
    from emorl.models.parts.humanomni import convert_humanomni

    parts, ref, src = write_humanomni(tmp_path, True, False)
    state = load_file(str(src / "model.safetensors"))
    key = "model.vision_tower.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight"
    state[key] = state[key] + 1.0
    save_file(state, str(src / "model.safetensors"))
    ext = load_parts_model(convert_humanomni(src, tmp_path / "ext", bert=parts["bert"], towers="external"))[0]
    ckpt = load_parts_model(convert_humanomni(src, tmp_path / "ckpt", bert=parts["bert"], towers="checkpoint"))[0]
    w_ext = ext.model.vision_tower.state_dict()["encoder.layers.0.mlp.fc1.weight"]
    w_ckpt = ckpt.model.vision_tower.state_dict()["encoder.layers.0.mlp.fc1.weight"]
    torch.testing.assert_close(w_ckpt, w_ext + 1.0)
    torch.testing.assert_close(w_ext, ref.vision.state_dict()["encoder.layers.0.mlp.fc1.weight"])


def test_unknown_key_and_missing_weight_are_errors(tmp_path):
    from safetensors.torch import load_file, save_file

    from emorl.models.parts.humanomni import convert_humanomni, map_key

    assert map_key("model.audio_tower.audio_tower.classifier.weight") is None
    assert map_key("model.layers.3.mlp.up_proj.weight") == "model.language_model.layers.3.mlp.up_proj.weight"
    parts, _, src = write_humanomni(tmp_path, True, False)
    state = load_file(str(src / "model.safetensors"))
    save_file({**state, "model.something_new.weight": torch.zeros(2)}, str(src / "model.safetensors"))
    with pytest.raises(KeyError, match="something_new"):
        convert_humanomni(src, tmp_path / "a", bert=parts["bert"])
    del state["model.bert_gate.2.bias"]
    save_file(state, str(src / "model.safetensors"))
    with pytest.raises(KeyError, match="fusion_gate.2.bias"):
        convert_humanomni(src, tmp_path / "b", bert=parts["bert"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_tower_configs_without_folders(tmp_path):
    """A tower named by hub id: the known config when the checkpoint stores its weights, else an error."""
    from emorl.models.parts.humanomni import _tower_config

    state = {"model.vision_tower.vision_tower.vision_model.post_layernorm.weight": torch.zeros(768)}
    cfg, folder = _tower_config("vision", None, "google/siglip-base-patch16-224", state, "model.vision_tower.")
    assert folder is None and (cfg.hidden_size, cfg.image_size // cfg.patch_size) == (768, 14)
    with pytest.raises(FileNotFoundError, match="holds no audio tower weights"):
        _tower_config("audio", None, "openai/whisper-large-v3", state, "model.audio_tower.")
    with pytest.raises(FileNotFoundError, match="not a known tower"):
        _tower_config("audio", None, "/nowhere/whisper-tiny", state, "model.audio_tower.")
    with pytest.raises(FileNotFoundError, match="tower folder not found"):
        _tower_config("vision", tmp_path / "missing", "x", state, "model.vision_tower.")


def test_converted_checkpoint_runs_through_the_adapter_and_group_paths(tmp_path):
    """An R1-Omni-shaped checkpoint (AllInOneSmall + BERT gate) converted into the parts family loads
    through ``load_adapter`` and its group paths equal its duplicated rows: greedy generation,
    log-probs, entropies and gradients (BERT and the gate included), for two prompts that differ
    only in their gate state (the instruction) on the same clip, mixed with an audio-only row."""
    from emorl.models import group
    from emorl.models.adapter import Modality, SamplingParams
    from emorl.models.parts.humanomni import convert_humanomni
    from emorl.models.registry import load_adapter

    parts, _, src = write_humanomni(tmp_path, small=True, compressor=False)
    torch.manual_seed(0)
    ad = load_adapter(convert_humanomni(src, tmp_path / "converted", bert=parts["bert"]))
    assert ad.family == "parts" and ad.gated and {"fusion_text_encoder", "fusion_gate"} <= set(ad.projectors())
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (8, 30, 44, 3), dtype=np.uint8)
    wave = rng.standard_normal(16000).astype(np.float32) * 0.1
    prompts = [ad.encode(frames, wave, q, Modality.AV, key=str(i)) for i, q in enumerate(INSTRUCTIONS)]
    prompts.append(ad.encode(None, wave, INSTRUCTIONS[0], Modality.AUDIO, key="a"))
    assert "fusion_input_ids" in prompts[0].mm and "fusion_input_ids" not in prompts[2].mm
    with torch.no_grad():
        media = group.encode_media(ad, prompts)
    assert float((media[0].video - media[1].video).abs().max()) > 1e-4  # the instruction gates the clip
    cache = group.EncoderCache()
    ad.model.requires_grad_(False)
    assert cache.key(prompts[0], ad) != cache.key(prompts[1], ad)  # the gate state is part of the key
    ad.model.requires_grad_(True)

    greedy = SamplingParams(max_new_tokens=6, greedy=True)
    rows, shared = ad.sample_groups_rows(prompts, 2, greedy), group.sample_groups_shared(ad, prompts, 2, greedy)
    assert [c.tolist() for cs in rows.ids for c in cs] == [c.tolist() for cs in shared.ids for c in cs]

    ad.model.eval()  # BERT's dropout (0.1) would draw differently in the two paths; gradients still flow
    sizes = (3, 2, 2)
    rows_p = [p for p, n in zip(prompts, sizes) for _ in range(n)]
    groups = [i for i, n in enumerate(sizes) for _ in range(n)]
    gen = torch.Generator().manual_seed(2)
    comps = [torch.randint(20, 300, (2 + i % 4,), generator=gen) for i in range(len(rows_p))]
    adv = torch.linspace(-1.0, 1.5, len(rows_p))

    def loss_grads(fn):
        ad.model.zero_grad(set_to_none=True)
        lp, mask, ent = fn(rows_p, comps, with_entropy=True)
        (lp * mask * adv[:, None]).sum().backward()
        return (
            lp.detach() * mask,
            ent * mask,
            {n: q.grad.clone() for n, q in ad.model.named_parameters() if q.grad is not None},
        )

    lp_d, e_d, g_d = loss_grads(ad.completion_logprobs_rows)
    lp_s, e_s, g_s = loss_grads(lambda p, c, **kw: group.shared_prefix_logprobs(ad, p, c, groups=groups, **kw))
    torch.testing.assert_close(lp_s, lp_d, rtol=0, atol=1e-5)
    torch.testing.assert_close(e_s, e_d, rtol=0, atol=1e-5)
    assert g_d.keys() == g_s.keys() and any(n.startswith("model.fusion_gate.") for n in g_d)
    assert any(n.startswith("model.fusion_text_encoder.") for n in g_d)
    for n in g_d:
        torch.testing.assert_close(g_s[n], g_d[n], rtol=1e-5, atol=1e-5, msg=lambda m, n=n: f"{n}: {m}")
