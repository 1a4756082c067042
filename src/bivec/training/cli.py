"""``bivec train mntp|simcse|supervised``: the paper's defaults, overridable from flags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bivec.cli_options import AllowPickleOption as AllowPickle
from bivec.cli_options import TrustRemoteCodeOption as TrustRemoteCode
from bivec.cli_options import fail
from bivec.training.config import (
    ContrastiveConfig,
    MNTPConfig,
    SimCSEConfig,
    SupervisedConfig,
    TrainConfig,
    paired_lora_alpha,
    setting_help,
)
from bivec.training.recipe import stage_defaults

app = typer.Typer(help="Train LLM2Vec stages: MNTP, unsupervised SimCSE, supervised contrastive.",
                  no_args_is_help=True, pretty_exceptions_enable=False)

def _help(name: str, cls: type = TrainConfig) -> str:
    return setting_help(cls, name)


Data = Annotated[list[str], typer.Argument(help=_help("data"))]
Output = Annotated[Path, typer.Option("--output", "-o", help=_help("output_dir"))]
Model = Annotated[Optional[str], typer.Option("--model", "-m", help=_help("model"))]
Adapters = Annotated[Optional[list[str]], typer.Option("--adapter", help=_help("adapters") + " Repeatable.")]
Steps = Annotated[Optional[int], typer.Option(help=_help("steps"))]
Batch = Annotated[Optional[int], typer.Option(help=_help("batch_size"))]
LR = Annotated[Optional[float], typer.Option("--lr", help=_help("learning_rate"))]
Warmup = Annotated[Optional[int], typer.Option(help=_help("warmup_steps"))]
MaxLen = Annotated[Optional[int], typer.Option(help=_help("max_length"))]
LoraR = Annotated[Optional[int], typer.Option(help=_help("lora_r") + " Alpha becomes twice the rank (the paper's "
                                                                     "ratio).")]
LoraDropout = Annotated[Optional[float], typer.Option(help=_help("lora_dropout"))]
Seed = Annotated[Optional[int], typer.Option(help=_help("seed"))]
SaveSteps = Annotated[Optional[int], typer.Option(help=_help("save_steps"))]
Resume = Annotated[bool, typer.Option("--resume", help=_help("resume"))]
Precision = Annotated[Optional[str], typer.Option(help=_help("precision"))]
GradCkpt = Annotated[bool, typer.Option("--gradient-checkpointing", help=_help("gradient_checkpointing"))]
DeepSpeed = Annotated[Optional[Path], typer.Option(help=_help("deepspeed_config"))]
FSDP = Annotated[Optional[Path], typer.Option(help=_help("fsdp_config"))]
Merge = Annotated[bool, typer.Option("--merge", help=_help("merge"))]
Scale = Annotated[Optional[float], typer.Option(help=_help("scale", ContrastiveConfig))]
Chunk = Annotated[Optional[int], typer.Option(help=_help("chunk_size", ContrastiveConfig))]
Pooling = Annotated[Optional[str], typer.Option(help=_help("pooling", ContrastiveConfig))]
Echo = Annotated[Optional[bool], typer.Option("--echo/--no-echo", help=_help("echo", ContrastiveConfig))]
Instruction = Annotated[str, typer.Option(help=_help("instruction", ContrastiveConfig))]


def _epilog(example: str, cls: type) -> str:
    """A stage command's example and its defaults, which differ from stage to stage."""
    return (f"{example}\n\nDefaults of this stage (the fields of its config, which bivec train llm2vec sets as "
            f"KEY=VALUE): {stage_defaults(cls)}")


def _run(config, train) -> None:
    overrides = {k: v for k, v in vars(config).items() if v is not None}
    config = type(config)(**overrides)
    try:
        log = train(config)
    except (ValueError, FileNotFoundError, TypeError, ImportError) as exc:
        fail(exc)
    typer.echo(f"{log['stage']}: {log['steps']} steps in {log['wall_s']:.0f} s "
               f"({log['tokens_per_s']:.0f} tokens/s), final loss {log['history'][-1]['loss']:.4f}; "
               f"outputs in {config.output_dir}")


def _common(data, output, model, adapters, steps, batch_size, lr, warmup, max_length, lora_r, lora_dropout, seed,
            save_steps, resume, precision, gradient_checkpointing, deepspeed, fsdp, allow_pickle, trust_remote_code) -> dict:
    return dict(data=list(data), output_dir=output, model=model, adapters=list(adapters or []), steps=steps,
                batch_size=batch_size, learning_rate=lr, warmup_steps=warmup, max_length=max_length,
                lora_r=lora_r, lora_alpha=None if lora_r is None else paired_lora_alpha(lora_r),
                lora_dropout=lora_dropout, seed=seed, save_steps=save_steps, resume=resume,
                precision=precision, gradient_checkpointing=gradient_checkpointing,
                deepspeed_config=deepspeed, fsdp_config=fsdp, allow_pickle=allow_pickle,
                trust_remote_code=trust_remote_code)


@app.command(epilog=_epilog("Example: bivec train mntp ../shared/data/text/wikitext2_valid.txt -o out/mntp --steps 1000 --merge",
                             MNTPConfig))
def mntp(data: Data, output: Output = Path("bivec-mntp"), model: Model = None, adapter: Adapters = None,
         steps: Steps = None, batch_size: Batch = None, lr: LR = None, warmup: Warmup = None, max_length: MaxLen = None,
         lora_r: LoraR = None, lora_dropout: LoraDropout = None, seed: Seed = None, save_steps: SaveSteps = None, resume: Resume = False,
         precision: Precision = None, gradient_checkpointing: GradCkpt = False, deepspeed: DeepSpeed = None,
         fsdp: FSDP = None, allow_pickle: AllowPickle = False, trust_remote_code: TrustRemoteCode = False,
         mask_ratio: Annotated[Optional[float], typer.Option(help=_help("mask_ratio", MNTPConfig))] = None,
         mask_token: Annotated[Optional[str], typer.Option(help=_help("mask_token", MNTPConfig))] = None,
         pack: Annotated[bool, typer.Option(help=_help("pack", MNTPConfig))] = True,
         merge: Merge = False) -> None:
    """Masked next-token prediction with LoRA on the bidirectional model (stage 1)."""
    from bivec.training import train_mntp

    common = _common(data, output, model, adapter, steps, batch_size, lr, warmup, max_length, lora_r, lora_dropout,
                     seed, save_steps, resume, precision, gradient_checkpointing, deepspeed, fsdp, allow_pickle,
                     trust_remote_code)
    _run(MNTPConfig(**common, mask_ratio=mask_ratio, mask_token=mask_token, pack=pack, merge=merge), train_mntp)


@app.command(epilog=_epilog("Example: bivec train simcse sentences.txt --adapter out/mntp -o out/simcse --steps 1000",
                             SimCSEConfig))
def simcse(data: Data, output: Output = Path("bivec-simcse"), model: Model = None, adapter: Adapters = None,
           steps: Steps = None, batch_size: Batch = None, lr: LR = None, warmup: Warmup = None,
           max_length: MaxLen = None, lora_r: LoraR = None, lora_dropout: LoraDropout = None, seed: Seed = None, save_steps: SaveSteps = None,
           resume: Resume = False, precision: Precision = None, gradient_checkpointing: GradCkpt = False,
           deepspeed: DeepSpeed = None, fsdp: FSDP = None, allow_pickle: AllowPickle = False,
           trust_remote_code: TrustRemoteCode = False, scale: Scale = None, chunk_size: Chunk = None,
           dropout: Annotated[Optional[float], typer.Option(help=_help("dropout", ContrastiveConfig))] = None,
           pooling: Pooling = None, echo: Echo = None, merge: Merge = False) -> None:
    """Unsupervised SimCSE, one sentence per line, on top of the MNTP adapter (stage 2)."""
    from bivec.training import train_simcse

    common = _common(data, output, model, adapter, steps, batch_size, lr, warmup, max_length, lora_r, lora_dropout,
                     seed, save_steps, resume, precision, gradient_checkpointing, deepspeed, fsdp, allow_pickle,
                     trust_remote_code)
    _run(SimCSEConfig(**common, scale=scale, chunk_size=chunk_size, dropout=dropout, pooling=pooling, echo=echo,
                      merge=merge), train_simcse)


@app.command(epilog=_epilog("Example: bivec train supervised ../shared/data/nli/sick_train_triplets.jsonl --adapter "
                             "out/mntp -o out/sup --batch-size 512 --chunk-size 32 "
                             "--instruction 'Retrieve semantically similar text.'", SupervisedConfig))
def supervised(data: Data, output: Output = Path("bivec-supervised"), model: Model = None, adapter: Adapters = None,
               steps: Steps = None, batch_size: Batch = None, lr: LR = None, warmup: Warmup = None,
               max_length: MaxLen = None, lora_r: LoraR = None, lora_dropout: LoraDropout = None, seed: Seed = None, save_steps: SaveSteps = None,
               resume: Resume = False, precision: Precision = None, gradient_checkpointing: GradCkpt = False,
               deepspeed: DeepSpeed = None, fsdp: FSDP = None, allow_pickle: AllowPickle = False,
               trust_remote_code: TrustRemoteCode = False, scale: Scale = None, chunk_size: Chunk = None,
               instruction: Instruction = "", pooling: Pooling = None, echo: Echo = None,
               merge: Merge = False) -> None:
    """Supervised contrastive training on (query, positive, negatives) JSONL/CSV rows (stage 2)."""
    from bivec.training import train_supervised

    common = _common(data, output, model, adapter, steps, batch_size, lr, warmup, max_length, lora_r, lora_dropout,
                     seed, save_steps, resume, precision, gradient_checkpointing, deepspeed, fsdp, allow_pickle,
                     trust_remote_code)
    _run(SupervisedConfig(**common, scale=scale, chunk_size=chunk_size, instruction=instruction, pooling=pooling,
                          echo=echo, merge=merge), train_supervised)


def _command_line(context: typer.Context) -> str:
    """The running command as a shell line, from its parsed arguments (what was not left at its
    default), so that a model card can say how to make the model again."""
    import shlex

    words = ["bivec", *context.command_path.split()[1:]]
    for param in context.command.params:
        value = context.params[param.name]
        if value == param.default or value in (None, [], ()):
            continue
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if param.param_type_name == "argument":
            words += [str(v) for v in values]
        elif param.is_flag:
            words.append(param.opts[0])
        else:
            for v in values:
                words += [param.opts[0], str(v)]
    return " ".join(shlex.quote(w) for w in words)


StageItems = Annotated[Optional[list[str]], typer.Option(
    metavar="KEY=VALUE", help="A setting of this stage (a field of its config, e.g. steps=250; the keys and their "
                              "defaults are below, their help in bivec train mntp|simcse|supervised --help); repeatable.")]
_RECIPE_EXAMPLE = ("Example: bivec train llm2vec ../shared/data/text/wikitext2_valid.txt -o out/encoder "
                   "--mntp steps=250 --mntp batch_size=8 --simcse steps=300 --eval ../shared/data/sts/sick_trial.tsv"
                   + "".join(f"\n\n--{name} KEY=VALUE, with the defaults: {stage_defaults(cls)}" for name, cls in
                             (("mntp", MNTPConfig), ("simcse", SimCSEConfig), ("supervised", SupervisedConfig))))


@app.command(epilog=_RECIPE_EXAMPLE)
def llm2vec(
    context: typer.Context,
    data: Data,
    output: Output = Path("bivec-llm2vec"),
    model: Model = None,
    sentences: Annotated[Optional[list[str]], typer.Option(help="SimCSE sentences, one per line; default: split from DATA.")] = None,
    triplets: Annotated[Optional[list[str]], typer.Option(help="(query, positive, negatives) rows: supervised training instead of SimCSE.")] = None,
    eval_files: Annotated[Optional[list[Path]], typer.Option("--eval", help="STS file scored at the end (score<TAB>s1<TAB>s2); repeatable.")] = None,
    no_mntp: Annotated[bool, typer.Option("--no-mntp", help="Skip MNTP (the paper's ablation).")] = False,
    causal: Annotated[bool, typer.Option("--causal", help="Train and encode with causal attention (the paper's ablation).")] = False,
    seed: Seed = None, precision: Precision = None, allow_pickle: AllowPickle = False,
    trust_remote_code: TrustRemoteCode = False,
    mntp: StageItems = None, simcse: StageItems = None, supervised: StageItems = None,
) -> None:
    """The whole LLM2Vec recipe: MNTP, SimCSE (or supervised), STS evaluation, one output folder.

    The folder loads as it is: bivec encode/serve/eval/convert/embed-corpus --model OUTPUT. Each stage
    takes the paper's defaults; change any with --mntp KEY=VALUE, --simcse KEY=VALUE or
    --supervised KEY=VALUE (the fields of MNTPConfig, SimCSEConfig, SupervisedConfig; repeatable).
    Running it again skips finished stages and resumes a killed one.
    """
    from bivec.training.recipe import LLM2VecConfig, stage_settings, train_llm2vec

    try:
        config = LLM2VecConfig(
            data=list(data), output_dir=output, model=model, sentences=list(sentences or []),
            triplets=list(triplets or []), eval_files=list(eval_files or []), mntp=not no_mntp,
            bidirectional=not causal, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code,
            command=_command_line(context), **{k: v for k, v in (("seed", seed), ("precision", precision)) if v is not None},
            mntp_stage=stage_settings(MNTPConfig, mntp or [], "--mntp"),
            simcse_stage=stage_settings(SimCSEConfig, simcse or [], "--simcse"),
            supervised_stage=stage_settings(SupervisedConfig, supervised or [], "--supervised"))
        results = train_llm2vec(config)
    except (ValueError, FileNotFoundError, TypeError, ImportError) as exc:
        fail(exc)
    for name, log in results["stages"].items():
        typer.echo(f"{name}: {log['steps']} steps in {log['wall_s']:.0f} s ({log['tokens_per_s']:.0f} tokens/s), "
                   f"final loss {log['final_loss']:.4f}")
    if results["scores"]:
        spearman = results["scores"]["spearman"]
        typer.echo("STS Spearman: " + ", ".join(f"{k} {v:.2f}" for k, v in spearman.items())
                   + f"; average {results['scores']['average']:.2f}")
    typer.echo(f"encoder in {output} (bivec encode --model {output} ...)")
