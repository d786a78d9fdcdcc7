"""Training assets: the four VITA-Audio stages, launched with `deepspeed` through Dagster Pipes.

Their work is `pipelines/steps/train.py` (all four stages) and
`pipelines/steps/evaluation.py`.
`train_stage1 → train_mtp1 → train_mtp10 → train_sft`, each in the `gpu` pool. The
asset plans the stage (`plan_stage`), registers the run as `running`, runs the
real `deepspeed` launcher with `PipesSubprocessClient` (rank 0 of the trainer streams
loss and throughput as Pipes log events and reports the final materialisation), then
registers the finished run in the catalogue. A stage killed halfway resumes from its
last DeepSpeed checkpoint when it is materialised again.
"""

import dagster as dg

from assets.pools import GPU_POOL
from assets.resources import VoxlakeProject
from pipelines.evaluation.compare import comparison_markdown
from pipelines.steps.evaluation import (
    compare_with_previous,
    eval_markdown,
    evaluate_final_checkpoint,
)
from pipelines.steps.train import (
    TrainingError,
    finish_run,
    loss_curve_markdown,
    plan_stage,
    read_result,
    start_run,
)
from schemas.training import STAGE_ORDER

TRAINING_GROUP = "training"
TRAIN_ASSET_KEYS = {stage: f"train_{stage}" for stage in STAGE_ORDER}


def build_train_asset(stage: str) -> dg.AssetsDefinition:
    """The asset `train_<stage>`, depending on the release or on the previous stage."""
    index = STAGE_ORDER.index(stage)
    upstream = "release" if index == 0 else TRAIN_ASSET_KEYS[STAGE_ORDER[index - 1]]

    @dg.asset(
        name=TRAIN_ASSET_KEYS[stage],
        group_name=TRAINING_GROUP,
        deps=[upstream],
        pool=GPU_POOL,
        kinds={"deepspeed", "pytorch"},
        description=f"VITA-Audio training stage `{stage}` on `training.release`, launched with "
        "the deepspeed launcher through Dagster Pipes; registers the run in the catalogue.",
    )
    def _train(
        context: dg.AssetExecutionContext,
        voxlake_project: VoxlakeProject,
        pipes_subprocess_client: dg.PipesSubprocessClient,
    ) -> dg.MaterializeResult:
        project = voxlake_project.load()
        try:
            plan = plan_stage(project, stage)  # type: ignore[arg-type]
        except TrainingError as error:
            raise dg.Failure(str(error)) from error
        record = start_run(project, plan, dagster_run_id=context.run.run_id)
        context.log.info(f"run {plan.run_id}: {' '.join(plan.command)}")
        try:
            invocation = pipes_subprocess_client.run(
                command=plan.command, context=context, env=plan.env
            )
            reported = invocation.get_materialize_result()
            result = read_result(plan)
        except BaseException:
            finish_run(project, plan, record, None)
            raise
        done = finish_run(project, plan, record, result)
        metadata = dict(reported.metadata or {})
        metadata.update(
            {
                "run_id": done.run_id,
                "release": done.release,
                "checkpoint": dg.MetadataValue.path(str(plan.checkpoint)),
                "checkpoint_sha256": done.checkpoint_sha256 or "",
                "base_checkpoint": done.base_checkpoint or "random init",
                "deepspeed_config": dg.MetadataValue.json(done.deepspeed_config),
                "loss_curve": dg.MetadataValue.md(loss_curve_markdown(plan.run_dir)),
            }
        )
        return dg.MaterializeResult(
            metadata=metadata, data_version=dg.DataVersion(done.checkpoint_sha256 or "")
        )

    return _train


TRAIN_ASSETS = [build_train_asset(stage) for stage in STAGE_ORDER]


@dg.asset(
    name="evaluation",
    group_name=TRAINING_GROUP,
    deps=[TRAIN_ASSET_KEYS["sft"]],
    pool=GPU_POOL,
    kinds={"pytorch", "duckdb"},
    description="Evaluates the newest SFT checkpoint on training.release's held-out split: "
    "ASR WER/CER per utterance and per evaluation set with bootstrap intervals, compared "
    "with the previous checkpoint's evaluation; text/audio loss and perplexity, "
    "per-MCTP-module top-1, and each decoding schedule's agreement with Vanilla and "
    "speed-up; registered in the catalogue's `evals` and `eval_utterances` tables, with "
    "an HTML report.",
)
def evaluation(
    context: dg.AssetExecutionContext, voxlake_project: VoxlakeProject
) -> dg.MaterializeResult:
    """Evaluate the final checkpoint of the training chain."""
    try:
        record = evaluate_final_checkpoint(
            voxlake_project.load(), dagster_run_id=context.run.run_id, progress=context.log.info
        )
    except TrainingError as error:
        raise dg.Failure(str(error)) from error
    metrics = record.metrics
    project = voxlake_project.load()
    comparison = compare_with_previous(project, record)
    compared = (
        {
            "compared_with": comparison.a.eval_id,
            "comparison": dg.MetadataValue.json(comparison.as_metadata()),
            "comparison_report": dg.MetadataValue.md(comparison_markdown(comparison)),
        }
        if comparison is not None
        else {}
    )
    return dg.MaterializeResult(
        metadata={
            "eval_id": record.eval_id,
            "eval_sets": dg.MetadataValue.json(metrics.get("eval_sets", [])),
            "html_report": dg.MetadataValue.path(str(project.lake.eval_report(record.eval_id))),
            **compared,
            "checkpoint": record.checkpoint,
            "checkpoint_sha256": record.checkpoint_sha256,
            "release": record.release,
            "split": record.split,
            "main_loss": metrics.get("main_loss"),
            "text_ppl": metrics.get("text_ppl"),
            "audio_ppl": metrics.get("audio_ppl"),
            "mctp_top1": dg.MetadataValue.json(metrics.get("mctp_top1")),
            "schedules": dg.MetadataValue.json(metrics.get("schedules")),
            "report": dg.MetadataValue.md(eval_markdown(metrics)),
        }
    )
