"""``emorl serve``: a trained model behind an HTTP service (FastAPI + uvicorn) with a web page.

Layers, each a module: ``settings`` (limits and switches), ``media`` (hostile-input checks and
decoding in a killable worker process), ``engine`` (one model, its run config, prompts, batched
inference, class probabilities, modality contributions), ``batcher`` (bounded queue and dynamic
batching across clients), ``metrics`` (counters and latency percentiles), ``app`` (routes, auth,
JSON errors) and ``server`` (load the model, start uvicorn). Nothing else in emorl imports this
package. See docs/serving.md.
"""
