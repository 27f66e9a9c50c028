"""The schema of every recipe kind: the single source for validation, ``--set`` and the
reference in docs/recipes.md (:func:`neuroalign.recipes.schema_markdown`)."""

from __future__ import annotations

from neuroalign.recipes._schema import Entries, Key, Table, function

__all__ = ["RECIPE_KINDS", "SCHEMAS", "ENCODER_KINDS", "ENCODER_CLASSES", "kind_tables"]

RECIPE_KINDS = ("fit", "rsa", "shape", "map", "decode", "generate")

#: fit recipes: [encoder] kind -> the estimator class (module:attribute)
ENCODER_CLASSES = {
    "layer-sweep": "neuroalign.encoders:LayerSweep",
    "ridge": "neuroalign.encoders:RidgeEncoder",
    "banded-ridge": "neuroalign.encoders:BandedRidgeEncoder",
    "attention-routing": "neuroalign.encoders:AttentionRoutingEncoder",
}
ENCODER_KINDS = tuple(ENCODER_CLASSES)


def _kw(spec: str, exclude: tuple[str, ...]):
    return lambda _values, _parent: (function(spec), exclude)


def _params(_values: dict, parent: dict):
    kind = parent.get("kind")
    if kind not in ENCODER_CLASSES:
        return None, ()
    return function(ENCODER_CLASSES[kind]), ("alphas", "cv", "test_split")


def _pipeline_kwargs(values: dict, _parent: dict):
    if values.get("source", "tiny") == "tiny":
        return function("neuroalign.decoders:tiny_pipeline"), ("path",)
    return function("neuroalign.decoders:load_pipeline"), ("source", "kind", "allow_download")


STUDY = Table("study", "What the study is (shown in the report).", keys=(
    Key("name", "string", "Name of the study."),
    Key("description", "string", "One or two sentences on what it asks."),
))

SIMULATE = Table(
    "simulate",
    "Simulation on demand: when the store at `path` does not exist and lies inside `out`, the "
    "simulated brain is written to `out` first (a store anywhere else that is missing is an "
    "error, never replaced by a simulation); a simulation in `out` made with other settings "
    "is made again.",
    keys=(Key("out", "string", "Folder of the simulated dataset.", required=True, path="path"),),
    kwargs=_kw("neuroalign.datasets:simulate", ("out", "overwrite", "write_store")),
    kwargs_doc="Other keys: keyword arguments of `neuroalign.datasets.simulate` "
               "(`format`, `n_images`, `n_test`, `n_sessions`, `seed`, `routing_roi`, ...).",
)


def _store(doc: str, *, required: bool = True, test_split: bool = False) -> Table:
    keys = [
        Key("path", "string", "The store (a zarr folder written by neuroalign).", required=True,
            path="path"),
        Key("simulate", "table", "Simulate the dataset when `path` does not exist.", table=SIMULATE),
        Key("rois", "string or strings", "ROIs to analyse (default: all)."),
    ]
    if test_split:
        keys.append(Key("test_split", "string", "Held-out split scored against the noise ceiling.",
                        default="test"))
    return Table("store", doc, keys=tuple(keys), required=required)


_FEATURE_KEYS = (
    Key("path", "string", "Features from a file instead of a model: a features zarr written by "
        "`neuroalign features` (or any .zarr/.nc Dataset with a `stimulus_id` coordinate and one "
        "variable per layer).", path="path"),
    Key("model", "string", 'A `neuroalign.features.extract` model spec ("torchvision:resnet18", '
        '"open_clip:ViT-B-32/openai", "hf:...", "minilm"), or "simulated-truth": the simulated '
        "brain's own generating network (its architecture, seed and preprocessing)."),
    Key("layers", "string or strings", 'Layer names, or "blocks" for every block (with `path`: '
        "the variables to use, default all)."),
    Key("weights", "string", '"default" (pretrained), "random" (random weights seeded by `seed`) '
        "or a local checkpoint file.", path="path-or-name"),
    Key("tokens", "boolean", "Token-level features `(stimulus, token, unit)` (attention routing).",
        default=False),
    Key("grid", "integer", "simulated-truth tokens: the token grid (grid x grid).", default=7),
    Key("cache", "string", "Feature cache (zarr); default: beside the output folder.", path="path"),
)
_EXTRACT = ("model", "stimuli", "layers", "cache", "weights", "overwrite")

FEATURE_SET = Table(
    "features", "One feature set: a model and its layers.", keys=_FEATURE_KEYS,
    kwargs=_kw("neuroalign.features:extract", _EXTRACT),
    kwargs_doc="Other keys: keyword arguments of `neuroalign.features.extract` "
               "(`seed`, `transform`, `pooling`, `batch_size`, `device`, `dtype`, ...).",
)
FIT_FEATURES = Table(
    "features",
    "The features: one feature set, or named feature spaces `[features.spaces.NAME]` "
    "(banded ridge).",
    keys=(*_FEATURE_KEYS, Key("spaces", "tables", "Named feature spaces (banded ridge), each a "
                              "feature set.", table=FEATURE_SET)),
    required=True,
    kwargs=_kw("neuroalign.features:extract", _EXTRACT),
    kwargs_doc=FEATURE_SET.kwargs_doc,
)


def _optional_features(doc: str) -> Table:
    return Table("features", doc, keys=_FEATURE_KEYS,
                 kwargs=_kw("neuroalign.features:extract", _EXTRACT), kwargs_doc=FEATURE_SET.kwargs_doc)


def _outputs(*extra: Key) -> Table:
    return Table(
        "outputs",
        "Where the results go. Default folder: `<recipe folder>/<recipe stem>-results`; "
        "`-o/--out` on the command line overrides both.",
        keys=(Key("dir", "string", "Output folder.", path="path"), *extra), always=True,
    )


PIPELINE = Table(
    "pipeline", "The diffusion pipeline.",
    keys=(Key("source", "string", '"tiny" (the project\'s small pipeline, trained on first use and '
              "cached), a local diffusers folder, or a Hugging Face id in the local cache.",
              default="tiny", path="path-or-name"),
          Key("kind", "string", 'The diffusers class, e.g. "StableUnCLIPImg2ImgPipeline".'),
          Key("path", "string", "tiny: where the trained pipeline is cached (default: neuroalign's "
              "cache folder, keyed by the training settings).", path="path")),
    always=True, kwargs=_pipeline_kwargs,
    kwargs_doc="Other keys: keyword arguments of `neuroalign.decoders.tiny_pipeline` (source "
               '"tiny") or of `neuroalign.decoders.load_pipeline`.',
)

CLUSTER = Table(
    "cluster",
    "Where the heavy part runs (ridge, layer-sweep and banded-ridge fits: batches of neuroids; "
    "attention routing: its training, in chunks of epochs run one after the other; shape distances: blocks of pairs; RSA: "
    "each subject's data RDM, per ROI), as cached cells: a rerun computes only the cells that "
    "are missing or failed. Without this table: one process, no cells.",
    keys=(
        Key("kind", "string", '"none" (cells in this process), "local" (a dask LocalCluster), "slurm", '
            '"pbs" (dask-jobqueue), or a scheduler address such as "tcp://host:8786".',
            default="none"),
        Key("result_path", "string", "Folder of the cached cells (default: `<output folder>.cells`, "
            "beside the output folder, kept between runs).", path="path"),
        Key("batch_size", "integer", "Neuroids (fit), epochs (attention routing) or pairs "
            "(shape) per cell; not for RSA (one cell per subject)."),
        Key("jobs", "integer", "slurm/pbs: number of jobs submitted.", default=1),
        Key("n_workers", "integer", "local: worker processes."),
        Key("processes", "integer or boolean", "local: processes (true) or threads (false); "
            "slurm/pbs: worker processes per job."),
        Key("cores", "integer", "slurm/pbs: cores per job."),
        Key("memory", "string", 'slurm/pbs: memory per job, e.g. "32GB".'),
        Key("walltime", "string", 'slurm/pbs: wall time per job, e.g. "04:00:00".'),
        Key("queue", "string", "slurm/pbs: partition (Slurm) or queue (PBS)."),
        Key("account", "string", "slurm/pbs: account charged."),
        Key("job_extra", "strings", 'slurm/pbs: extra directives, e.g. ["--gres=gpu:1"].'),
        Key("local_directory", "string", "Workers' scratch folder.", path="path"),
        Key("options", "table", "Other keyword arguments of the dask cluster class "
            "(LocalCluster, dask_jobqueue.SLURMCluster / PBSCluster).",
            table=Table("options", "Keyword arguments of the dask cluster class.",
                        entries=Entries("any", "A keyword argument of the cluster class."))),
    ),
)

ALLOW_DOWNLOAD = Key("allow_download", "boolean", "Let neuroalign download missing weights "
                     "(as --allow-download).", default=False)
KIND = Key("kind", "string", "What the recipe runs.", required=True, choices=RECIPE_KINDS)


def _root(*keys: Key) -> Table:
    return Table("", "Top-level keys.", keys=(KIND, *keys, Key("study", "table", STUDY.doc, table=STUDY)))


def _t(table: Table) -> Key:
    return Key(table.name, "table", table.doc, required=table.required, table=table)


FIT = _root(
    _t(_store("The responses.", test_split=True)),
    _t(FIT_FEATURES),
    _t(Table("encoder", "The encoder.", required=True, keys=(
        Key("kind", "string", "The estimator.", required=True, choices=ENCODER_KINDS),
        Key("alphas", "alphas", "Ridge penalties tried per neuroid.", default={"logspace": [-2, 6, 20]}),
        Key("cv", "integer", "Cross-validation folds (a stimulus's repetitions stay together).",
            default=5, minimum=2),
        Key("params", "table", "Other constructor arguments of the estimator.", table=Table(
            "params", "Keyword arguments of the estimator named by `kind` (LayerSweep, "
            "RidgeEncoder, BandedRidgeEncoder, AttentionRoutingEncoder).", kwargs=_params,
            kwargs_doc="Any constructor argument of the estimator but `alphas`, `cv` and "
                       "`test_split`.")),
    ))),
    _t(_outputs(
        Key("n_boot", "integer", "Bootstrap resamples of the per-ROI summaries.", default=1000),
        Key("aggregate", "string", "Per-ROI aggregate.", default="mean", choices=("mean", "median")),
        Key("ceiling_threshold", "number", "Percent; neuroids below this noise ceiling are left "
            "out of the ceiling-normalised summaries.", default=10.0),
    )),
    _t(CLUSTER),
)

RSA = _root(
    _t(_store("The responses; one analysis per ROI.")),
    _t(Table("rdm", "The data RDMs.", always=True, keys=(
        Key("metric", "string", "Data RDM metric (crossnobis: cross-validated across repetitions).",
            default="correlation"),
        Key("pseudo_subjects", "integer", "Split each ROI's neuroids into this many "
            "pseudo-subjects (for a noise ceiling from one subject)."),
        Key("by", "string", "Neuroid coordinate that names the subjects.", default="subject"),
        Key("random_state", "integer", "Seed of the pseudo-subject split.", default=0),
    ))),
    _t(Table("models", "Model representations from files.", entries=Entries(
        "string", '"features.zarr:layer", "features.nc:variable" or "rows.npy" (rows in the '
        "order of the store's stimuli after averaging).", path="path[:variable]"))),
    _t(_optional_features("Model representations extracted on demand: every layer is a model.")),
    _t(Table("rsa", "The comparison.", always=True, kwargs=_kw("neuroalign.compare:rsa",
                                                               ("models", "data", "show_progress")),
             kwargs_doc="Keys: keyword arguments of `neuroalign.compare.rsa` (`method`, "
                        "`bootstrap`, `n_bootstrap`, `model_metric`, ...).")),
    _t(CLUSTER),
    _t(_outputs()),
)

SHAPE = _root(
    _t(_store("Responses: each ROI's repetition-averaged responses are a system.", required=False)),
    _t(Table("systems", "Systems from files.", entries=Entries(
        "string", '"features.zarr:layer", "file.nc:variable" or "rows.npy".', path="path[:variable]"))),
    _t(_optional_features("Systems extracted on demand: every layer is a system.")),
    _t(Table("shape", "The metric.", always=True, keys=(
        Key("alpha", "number", "1 = Procrustes, 0 = CCA, between: partial whitening.", default=1.0),
        Key("score_method", "string", "Distance on the sphere or in Euclidean space.",
            default="angular", choices=("angular", "euclidean")),
        Key("standardise", "boolean", "z-score every unit across stimuli first.", default=False),
    ))),
    _t(CLUSTER),
    _t(_outputs()),
)

MAP = _root(
    _t(_store("The responses the scores belong to.")),
    _t(Table("results", "Layer scores to map.", keys=(
        Key("path", "string", "A fit output folder (its results.zarr) or a results file "
            "(.zarr, .nc) with 'score' on ('layer', 'neuroid'[, 'time']).", required=True,
            path="path"),))),
    _t(_optional_features("Without [results]: fit a ridge layer sweep on these features first.")),
    _t(Table("encoder", "The layer sweep run without [results].", keys=(
        Key("alphas", "alphas", "Ridge penalties.", default={"logspace": [-2, 6, 20]}),
        Key("cv", "integer", "Cross-validation folds.", default=5, minimum=2),
    ))),
    _t(Table("map", "The maps.", always=True, keys=(
        Key("format", "string", "Figure format.", default="png", choices=("png", "svg", "pdf")),
        Key("units", "boolean", "Also map single units to ROIs (needs [features]).", default=False),
        Key("n_permutations", "integer", "Permutations for the unit p-values.", default=200),
    ))),
    _t(CLUSTER),
    _t(_outputs()),
)

DECODE = _root(
    ALLOW_DOWNLOAD,
    _t(_store("The responses (split 'train' fits the decoder, 'test' is decoded).")),
    _t(PIPELINE),
    _t(Table("decoder", "Brain -> embedding.", always=True, keys=(
        Key("kind", "string", "Decoder.", default="ridge", choices=("ridge", "mlp")),),
        kwargs=_kw("neuroalign.decoders:EmbeddingDecoder", ("kind",)),
        kwargs_doc="Other keys: keyword arguments of `neuroalign.decoders.EmbeddingDecoder`.")),
    _t(Table("lowlevel", "Brain-Diffuser-style low-level image prediction (img2img).", keys=(
        Key("size", "integer", "Side of the predicted thumbnail.", default=8),))),
    _t(Table("reconstruct", "Embedding -> image.", always=True, keys=(
        Key("mode", "string", "Conditioning mode.", default="unclip",
            choices=("unclip", "tokens", "ip-adapter", "img2img")),),
        kwargs=_kw("neuroalign.decoders:Reconstructor", ("pipeline", "mode", "scorer")),
        kwargs_doc="Other keys: keyword arguments of `neuroalign.decoders.Reconstructor`.")),
    _t(Table("metrics", "How reconstructions are scored.", always=True, keys=(
        Key("preset", "string", "Metric protocol.", default="simulated"),
        Key("networks", "strings", "Feature networks of the 2-way identification metrics.",
            default=["alexnet2", "alexnet5"]),
        Key("weights", "string", '"none" (random weights) or "DEFAULT" (torchvision\'s pretrained '
            "weights from the local cache).", default="none"),
    ))),
    _t(_outputs()),
)

GENERATE = _root(
    ALLOW_DOWNLOAD,
    _t(_store("The responses the encoder is fitted on (not needed with [encoder] path).",
              required=False)),
    _t(Table("encoder", "The differentiable encoder the generator climbs.", required=True, keys=(
        Key("path", "string", "A saved encoder folder (DifferentiableRidgeEncoder.save).",
            path="path"),
        Key("model", "string", '"simulated-truth" or "torchvision:ARCH": fit a ridge read-out of '
            "this network's pooled layers on the store's averaged responses."),
        Key("weights", "string", '"random" (seeded by `seed`) or "DEFAULT".', default="random"),
        Key("seed", "integer", "Seed of random network weights.", default=0),
        Key("layers", "strings", "Layers read out.", default=["layer1", "layer2", "layer3", "layer4"]),
        Key("alpha", "number", "Ridge penalty (on z-scored features).", default=10.0),
    ))),
    _t(Table("generate", "What to generate.", required=True, keys=(
        Key("roi", "string", "Target: an ROI ('FFA-1') or a contrast ('FFA-1 - PPA').", required=True),
        Key("n", "integer", "Number of images.", default=8),
        Key("scale", "number", "Guidance scale.", default=10.0),
        Key("steps", "integer", "Sampling steps.", default=12),
        Key("random_state", "integer", "First seed (image i uses random_state + i).", default=0),
    ))),
    _t(PIPELINE),
    _t(_outputs()),
)

#: kind -> (what it runs, root table)
SCHEMAS: dict[str, tuple[str, Table]] = {
    "fit": ("Voxelwise encoders (ridge, layer sweep, banded ridge, attention routing): "
            "`results.zarr`, `summary.json` (per-ROI scores with bootstrap intervals).", FIT),
    "rsa": ("Representational similarity analysis with noise ceilings, per ROI: score tables, "
            "bar plots and RDM heatmaps.", RSA),
    "shape": ("Generalised shape-metric distances among systems (model layers, ROIs): "
              "`distances.csv` and an MDS plot.", SHAPE),
    "map": ("Layer-preference maps and tables (volume slices, surfaces, sensor topographies) "
            "from layer scores, or from a layer sweep fitted first.", MAP),
    "decode": ("Brain -> embedding -> diffusion reconstructions, scored against chance: "
               "`grid.png`, `metrics.json`.", DECODE),
    "generate": ("Brain-guided image generation (BrainDiVE-style): `grid.png`, "
                 "`activations.json`.", GENERATE),
}


def kind_tables() -> dict[str, list[str]]:
    """Top-level table name -> the kinds that have it (for "does not belong" errors)."""
    out: dict[str, list[str]] = {}
    for kind, (_, root) in SCHEMAS.items():
        for name in root.tables():
            out.setdefault(name, []).append(kind)
    return out
