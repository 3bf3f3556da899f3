"""The training machinery SFT (``emorl.sft``) and GRPO (``emorl.rl.trainer``) share, one module per part:

- ``session``: ``Session``, one run from start to final save (launch, model set-up, optimizer,
  resume, the step loop with checkpoints and signals, non-finite accounting, metrics, the save);
- ``setup``: tower freezing, LoRA on the LLM, activation checkpointing, the sharding ``Strategy``;
- ``sharding``: ``Strategy`` (replicated) and ``FSDP2Strategy``; ``zero``: DeepSpeed ZeRO-2/3;
- ``checkpoint``: atomic checkpoints with exact resume, ``TrainState``, SIGINT/SIGTERM.

The optimizer (float32 master weights), loggers and trackers are in ``emorl.train_utils``.
"""
