"""The transformers-only usage code of an exported Qwen-Omni thinker (the model card's "How to
use"): emorl's frame sampling, its frame size and pixel budget, the clip's audio interleaved with
the video (``use_audio_in_video``), log-mel over the clip's own length."""

from __future__ import annotations

_USE = """```python
import av, numpy as np{pil}
from transformers import AutoProcessor, {cls}

model = {cls}.from_pretrained("{repo}").eval()
processor = AutoProcessor.from_pretrained("{repo}")

def clip(path, num_frames={frames}):
    \"\"\"{frames} RGB frames at the middles of equal segments, and the audio as 16 kHz mono.\"\"\"
    with av.open(path) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        seconds = c.duration / 1e6
    idx = [min(len(frames) - 1, int((i + 0.5) * len(frames) / num_frames)) for i in range(num_frames)]
    with av.open(path) as c:
        rs = av.AudioResampler(format="flt", layout="mono", rate=16000)
        audio = np.concatenate([o.to_ndarray().reshape(-1) for f in c.decode(audio=0) for o in rs.resample(f)])
    return np.stack([frames[i] for i in idx]), audio, num_frames / seconds

frames, audio, fps = clip("clip.mp4"){resize}
messages = [{{"role": "user", "content": [{{"type": "video"}}, {{"type": "text", "text": {prompt!r}}}]}}]
text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
fe = processor.feature_extractor  # log-mel over the clip plus one window (the frames equal Whisper's 30 s padding)
inputs = processor(text=[text], videos=[frames], audio=[audio], videos_kwargs={videos_kwargs},
                   audio_kwargs={{"max_length": -(-(len(audio) + fe.n_fft) // fe.hop_length) * fe.hop_length}},
                   load_audio_from_video=True, audio_from_video_indices=[0], return_tensors="pt")
out = model.generate(**inputs, use_audio_in_video=True, max_new_tokens={max_new}, do_sample=False)
print(processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0])
```"""


def _videos_kwargs(frame_pixels: int | None) -> str:
    if not frame_pixels:
        return '{"fps": fps}'
    return (
        '{"fps": fps, "cap_pixels_per_frame": False,  # the pixel budget per frame emorl used\n'
        f'                                   "size": {{"shortest_edge": {frame_pixels}, "longest_edge": {frame_pixels}}}}}'
    )


def usage_code(
    *, cls: str, repo: str, frames: int, prompt: str, max_new: int, frame_pixels: int | None, frame_size: int
) -> str:
    """The usage code block for an exported thinker of class ``cls`` published as ``repo``."""
    resize = (
        (
            f"\nside = {frame_size}  # emorl resizes frames to side x side (bilinear)\n"
            "frames = np.stack([np.asarray(Image.fromarray(f).resize((side, side), Image.BILINEAR)) "
            "for f in frames])"
        )
        if frame_size
        else ""
    )
    return _USE.format(
        cls=cls,
        repo=repo,
        frames=frames,
        prompt=prompt,
        max_new=max_new,
        videos_kwargs=_videos_kwargs(frame_pixels),
        pil="\nfrom PIL import Image" if frame_size else "",
        resize=resize,
    )
