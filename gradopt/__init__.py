"""gradopt: improve sequences by gradient ascent through a learned reward model.

The ascent engine: relaxations (`_relax`), objective terms (`_objective`), projections
(`_projection`), the exact-swap polish (`_polish`), first-order edit estimates (`_first_order`),
gradient-informed samplers (`_gwg`: Gibbs-with-gradients, discrete Langevin), the optimizer adapter
(`_optim`), frozen-position masks (`_masks`), per-position allowed tokens for edit kinds such as rhythm-preserving ABC pitch
edits (`_edits`), exact search over domain-proposed whole sequences (`_moves`), start sequences (`_starts`), the batched driver (`_ascent`) and harvesting of
likely reward-model blind spots (`_harvest`), the do-no-harm guard on what it returns (`_trust`), and the
best-of-N and hill-climbing baselines it is measured against (`_baselines`); a reward-model
recipe run with its harvest rounds (`_recipes`).
"""

from ._ascent import AscentConfig, optimize
from ._ascent_batch import allowed_per_position, pad_batch, row_seed
from ._baselines import Snapshot, best_of_n, exact_scores, hill_climb, mean_logliks, memo_validate
from ._corpus_job import (
    CorpusJobConfig,
    ModelsSpec,
    Shard,
    atomic_write,
    improve_shard,
    job_domain,
    plan_shards,
    read_corpus,
    read_shard,
    run_corpus_job,
    summarise,
)
from ._distance import dedup, edit_distance, nearest_distance, normalized_distance
from ._edit_problem import EditProblem
from ._generate import POLISH_ENGINE, GenerateConfig, GeneratedPiece, GenerateResult, best_then_polish, generate
from ._first_order import Agreement, Sites, edit_sites, exact_deltas, first_order_deltas, rank_agreement
from ._edits import EDITS, NOTE_LETTERS, edit_masks, note_letters, pitch_edits
from ._gwg import GWGConfig, SamplerRun, gibbs_with_gradients, run_sampler
from ._harvest import HarvestConfig, Suspect, harvest, queue_order, suspect_reasons
from ._moves import MoveConfig, MoveResult, apply_moves, keep_bars, move_search, score_texts
from ._masks import bar_of_chars, freeze_bars, freeze_positions, freeze_prefix, freeze_special, parse_bars
from ._objective import (
    ObjectiveWeights,
    Terms,
    discrete_log_likelihood,
    discrete_terms,
    kl_to_start,
    mean_entropy,
    relaxed_terms,
    reward_term,
    score_sequences,
    shared_backbone,
    smoothed_start,
    soft_log_likelihood,
)
from ._optim import Adam
from ._polish import PolishConfig, polish, propose_swaps, ranked_candidates, sample_candidates
from ._projection import project_argmax, project_nearest
from ._recipes import build_reward_model, harvest_round, header_frozen_masks
from ._relax import (
    RELAXATIONS,
    EmbeddingPEZ,
    GumbelSoftmax,
    RelaxContext,
    Relaxation,
    Relaxed,
    SimplexEntropy,
    SimplexLogits,
    StraightThrough,
    make_relaxation,
)
from ._result import AscentResult, RowResult
from ._simplex import project_entropy, project_simplex, tsallis2_entropy
from ._stats import mean_interval
from ._starts import starts_from_generator, starts_from_noise, starts_from_texts
from ._trust import TrustConfig, edit_budget, gain_stats, member_scores, verdict

__all__ = [
    "AscentConfig", "allowed_per_position", "optimize", "pad_batch", "row_seed",
    "Agreement", "Sites", "edit_sites", "exact_deltas", "first_order_deltas", "rank_agreement",
    "EDITS", "NOTE_LETTERS", "edit_masks", "note_letters", "pitch_edits",
    "MoveConfig", "MoveResult", "apply_moves", "keep_bars", "move_search", "score_texts",
    "bar_of_chars", "freeze_bars", "freeze_positions", "freeze_prefix", "freeze_special", "parse_bars",
    "ObjectiveWeights", "Terms", "discrete_log_likelihood", "discrete_terms", "kl_to_start", "mean_entropy",
    "relaxed_terms", "reward_term", "score_sequences", "shared_backbone", "smoothed_start", "soft_log_likelihood",
    "Adam", "PolishConfig", "polish", "propose_swaps", "ranked_candidates", "sample_candidates",
    "project_argmax", "project_nearest",
    "RELAXATIONS", "EmbeddingPEZ", "GumbelSoftmax", "RelaxContext", "Relaxation", "Relaxed", "SimplexEntropy",
    "SimplexLogits", "StraightThrough", "make_relaxation",
    "AscentResult", "RowResult", "project_entropy", "project_simplex", "tsallis2_entropy",
    "build_reward_model", "harvest_round", "header_frozen_masks",
    "POLISH_ENGINE", "GenerateConfig", "GeneratedPiece", "GenerateResult", "best_then_polish", "generate",
    "Snapshot", "best_of_n", "exact_scores", "hill_climb", "mean_logliks", "memo_validate",
    "CorpusJobConfig", "ModelsSpec", "Shard", "atomic_write", "improve_shard", "job_domain", "plan_shards", "read_corpus", "read_shard", "run_corpus_job", "summarise",
    "dedup", "edit_distance", "nearest_distance", "normalized_distance",
    "EditProblem", "GWGConfig", "SamplerRun", "gibbs_with_gradients", "run_sampler",
    "HarvestConfig", "Suspect", "harvest", "queue_order", "suspect_reasons",
    "starts_from_generator", "starts_from_noise", "starts_from_texts",
    "TrustConfig", "edit_budget", "gain_stats", "member_scores", "verdict", "mean_interval",
]

from domains import DOMAIN_NAMES as _DOMAIN_NAMES  # noqa: E402
from domains._deprecation import deprecated_aliases  # noqa: E402

# the corpus job's old registry of domains: its keys (domain names) are what `read_corpus` and
# `CorpusJobConfig.domain` take now, built by `job_domain` through the `domains.Domain` hooks
__getattr__ = deprecated_aliases(__name__, {"CORPUS_DOMAINS": ("job_domain", {n: n for n in _DOMAIN_NAMES})})
