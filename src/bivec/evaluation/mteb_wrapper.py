"""Run bivec encoders on MTEB (the ``mteb`` package, 2.x), with LLM2Vec-style task instructions.

As in the LLM2Vec paper, each task's instruction goes before the query only for retrieval-style
(asymmetric) tasks, where documents are encoded without one, and before every text for symmetric
tasks (STS, classification, clustering, pair classification). The instruction is the one given
for the task name, else the task's own MTEB prompt, with a trailing colon added as LLM2Vec does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.sts import AbsTaskSTS
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction
from mteb.types import PromptType

from bivec.encoder import DEFAULT_BATCH_SIZE
from bivec.evaluation.sts import read_sts_file


def llm2vec_instruction(instruction: str) -> str:
    """LLM2Vec's instruction format: stripped, ending with a colon (empty stays empty).

    Example:
        >>> llm2vec_instruction("Retrieve semantically similar text.")
        'Retrieve semantically similar text:'
    """
    instruction = instruction.strip()
    if instruction and not instruction.endswith(":"):
        instruction = instruction.rstrip(".") + ":"
    return instruction


class MTEBEncoder(AbsEncoder):
    """A :class:`bivec.Encoder` as an MTEB model: pass it to ``mteb.evaluate``.

    Example:
        >>> import mteb
        >>> model = MTEBEncoder(bivec.Encoder.from_pretrained("path/to/checkpoint"), name="me/bi-mntp")  # doctest: +SKIP
        >>> mteb.evaluate(model, mteb.get_tasks(tasks=["STS12"]), cache=None)  # doctest: +SKIP
    """

    def __init__(
        self, encoder, *, name: str = "bivec/encoder", revision: str = "local",
        instructions: Mapping[str, str] | None = None, use_instructions: bool = True,
    ) -> None:
        self.model = encoder
        self.instructions = dict(instructions or {})
        self.use_instructions = use_instructions
        if "/" not in name:
            name = f"bivec/{name}"  # MTEB's result folders expect an owner/name
        self.mteb_model_meta = ModelMeta.create_empty(overwrites=dict(
            name=name, revision=revision, embed_dim=encoder.dim, max_tokens=encoder.max_length,
            similarity_fn_name=ScoringFunction.COSINE, use_instructions=use_instructions, framework=["PyTorch"],
        ))

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, *, name: str | None = None,
                        instructions: Mapping[str, str] | None = None, **encoder_options: Any) -> "MTEBEncoder":
        """Load a model or trained checkpoint directory (``None``: the embedded default model)."""
        from bivec.encoder import Encoder

        encoder = Encoder.from_pretrained(path, **encoder_options)
        return cls(encoder, name=name or Path(str(path or "default")).name, instructions=instructions)

    def task_instruction(self, task_metadata: TaskMetadata, prompt_type: PromptType | None) -> str:
        """The instruction for one side of a task: ``--instructions``' entry for the task, else the
        model's own prompt named after the task, else for documents its ``document`` prompt (none
        when it has none), else the task's MTEB prompt."""
        if not self.use_instructions:
            return ""
        if task_metadata.name in self.instructions:
            return llm2vec_instruction(self.instructions[task_metadata.name])
        prompts = getattr(self.model, "prompts", {})
        if task_metadata.name in prompts:
            return prompts[task_metadata.name]
        if prompt_type == PromptType.document:
            return prompts.get("document", "")
        return llm2vec_instruction(self.get_instruction(task_metadata, prompt_type))

    def encode(self, inputs, *, task_metadata: TaskMetadata, hf_split: str, hf_subset: str,
               prompt_type: PromptType | None = None, **kwargs: Any) -> np.ndarray:
        instruction = self.task_instruction(task_metadata, prompt_type)
        texts = [text for batch in inputs for text in batch["text"]]
        # MTEB hands over empty strings now and then (e.g. untitled documents); the encoder refuses
        # empty texts, so encode a space, which every tokenizer maps to a token.
        texts = [text if text.strip() else " " for text in texts]
        items = [[instruction, text] for text in texts] if instruction else texts
        return self.model.encode(items, batch_size=int(kwargs.get("batch_size", DEFAULT_BATCH_SIZE)), normalize=True)


_TASK_DEFAULTS: dict[str, Any] = dict(
    description="A task built by bivec from local data.", reference=None, category="t2t",
    eval_splits=["test"], eval_langs=["eng-Latn"], main_score=None, date=None, domains=None,
    task_subtypes=None, license=None, annotations_creators=None, dialect=None, sample_creation=None,
    bibtex_citation=None, modalities=["text"],
)


def _metadata(name: str, task_type: str, main_score: str, source: str, prompt: str | None) -> TaskMetadata:
    return TaskMetadata(**(_TASK_DEFAULTS | dict(
        name=name, type=task_type, main_score=main_score, dataset={"path": source, "revision": "local"}, prompt=prompt,
    )))


def local_sts_task(path: str | Path, *, name: str | None = None, prompt: str | None = None,
                   min_score: float | None = None, max_score: float | None = None) -> AbsTaskSTS:
    """An MTEB STS task read from a local ``score<TAB>sentence1<TAB>sentence2`` file.

    Example:
        >>> task = local_sts_task("../shared/data/sts/sick_trial.tsv")  # doctest: +SKIP
        >>> mteb.evaluate(MTEBEncoder(encoder), task, cache=None)  # doctest: +SKIP
    """
    import datasets

    path = Path(path)
    scores, first, second = read_sts_file(path)

    class LocalSTS(AbsTaskSTS):
        metadata = _metadata(name or f"Local{path.stem}", "STS", "cosine_spearman", str(path), prompt)

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            data = datasets.Dataset.from_dict({"sentence1": first, "sentence2": second, "score": scores})
            self.dataset = datasets.DatasetDict({"test": data})
            self.data_loaded = True

    task = LocalSTS()
    task.min_score = min(scores) if min_score is None else min_score
    task.max_score = max(scores) if max_score is None else max_score
    return task


def local_retrieval_task(
    queries: Mapping[str, str], corpus: Mapping[str, str], relevant: Mapping[str, Mapping[str, int]], *,
    name: str = "LocalRetrieval", prompt: str | None = None,
) -> AbsTaskRetrieval:
    """An MTEB retrieval task from in-memory queries, documents and relevance judgements
    (query id -> {document id: relevance})."""
    import datasets

    for qid, docs in relevant.items():
        if qid not in queries:
            raise ValueError(f"relevance judgements name query {qid!r}, which is not among the queries")
        missing = [d for d in docs if d not in corpus]
        if missing:
            raise ValueError(f"query {qid!r} is judged against unknown documents {missing}")

    class LocalRetrieval(AbsTaskRetrieval):
        metadata = _metadata(name, "Retrieval", "ndcg_at_10", "local", prompt)

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            split = dict(
                queries=datasets.Dataset.from_list([{"id": k, "text": v} for k, v in queries.items()]),
                corpus=datasets.Dataset.from_list([{"id": k, "text": v, "title": ""} for k, v in corpus.items()]),
                relevant_docs={q: dict(d) for q, d in relevant.items()},
                top_ranked=None,
            )
            self.dataset = {"default": {"test": split}}
            self.data_loaded = True

    return LocalRetrieval()


def load_mteb_tasks(names: Sequence[str]) -> list:
    """MTEB tasks by name, each with its data loaded; a name MTEB does not know, or a dataset that
    cannot be reached (no network, HF_HUB_OFFLINE=1, not in the local cache) raises a ValueError
    that names the task and its dataset."""
    import mteb

    tasks = []
    for name in names:
        try:
            task = mteb.get_task(name)
        except KeyError as exc:
            raise ValueError(f"MTEB has no task named {name!r} ({exc})") from None
        try:
            task.load_data()
        except Exception as exc:  # the hub client raises many types when it cannot connect
            raise ValueError(
                f"MTEB task {name!r}: its dataset {task.metadata.dataset.get('path')!r} cannot be reached "
                f"(no network, HF_HUB_OFFLINE=1, or not in the local Hugging Face cache): {type(exc).__name__}: {exc}"
            ) from exc
        tasks.append(task)
    return tasks


# The headline metrics of the common task types; MTEB's full score files keep the rest.
_REPORTED = ("cosine_spearman", "cosine_pearson", "ndcg_at_10", "map_at_10", "recall_at_10", "mrr_at_10", "accuracy",
             "f1", "v_measure", "max_ap", "map")


def run_mteb(model: MTEBEncoder, tasks: Sequence, *, batch_size: int = DEFAULT_BATCH_SIZE,
             output_dir: str | Path | None = None) -> dict[str, dict[str, float]]:
    """Evaluate ``model`` on loaded ``tasks``; returns, per task, its main score x100 and the
    headline scores of its first split/subset. MTEB's own result files go to ``output_dir``."""
    import mteb

    if not tasks:
        raise ValueError("run_mteb needs at least one task")
    cache = mteb.ResultCache(cache_path=str(output_dir)) if output_dir is not None else None
    result = mteb.evaluate(model, list(tasks), cache=cache, encode_kwargs={"batch_size": batch_size},
                           overwrite_strategy="always", show_progress_bar=False)
    scores: dict[str, dict[str, float]] = {}
    for task_result in result.task_results:
        split = next(iter(task_result.scores.values()))[0]
        row = {"main_score": 100 * float(split["main_score"])}
        row |= {k: 100 * float(split[k]) for k in _REPORTED if k in split}
        scores[task_result.task_name] = row
    return scores
