"""Rule proposal: a rule set for two files worked out from their columns, without a rules file.

`propose_rule_set(source_path, target_path)` reads both files as the file stage does
(`read_table`, `profile`) and hands the typed frames and detected schemas to
`propose_from_frames`, which:

1. scores every (source column, target column) pair: 0.35 x name similarity (cosine of the
   embeddings of the names, by the embedder the caller hands in: `EmbedderResource`'s packaged
   all-MiniLM-L6-v2 for `recon run`, abbreviations spelled out, blended with
   rapidfuzz string similarity) + 0.65 x value-profile similarity (agreeing data types, plus
   evidence from the values themselves: for text, the share of a few thousand sampled values,
   case- and whitespace-normalised, found among all the other side's values, or within
   Jaro-Winkler 0.85 of them, or for low-cardinality codes the Jaccard of the value sets; for
   numbers, the share of sampled values equal to the cent plus one minus the two-sample
   Kolmogorov-Smirnov distance; for dates, the overlap of the date ranges plus one minus the
   KS distance);
2. assigns source columns to target columns one-to-one, maximising the total score
   (`scipy.optimize.linear_sum_assignment`); pairs scoring below `MIN_SCORE` are left out, so
   a column without a counterpart is not mapped;
3. chooses each mapping's transformation from the data: DATE_FORMAT (with the source's
   detected format) for a date column written differently from the target's, UPPERCASE or
   LOWERCASE when that raises the exact overlap with the target's values, TRIM for other text,
   DIRECT otherwise;
4. derives matching rules from the data as transformed and normalised (what the engine will
   compare, `pipelines.reconcile.normalize`):
   an id-like text column with high cross overlap -> EXACT weight 1.0; amounts (DECIMAL) ->
   RANGE with a tolerance of one unit of the coarser scale (0.01 for cents); dates ->
   DATE_RANGE 3 days; names and descriptions with moderate (fuzzy) overlap -> FUZZY 0.85
   weight 0.5; low-cardinality codes with identical value sets, filled on both sides
   (currency) -> EXACT weight 0.2. A column without value overlap (a row id unique on one
   side only, say) never becomes a rule. The match threshold is 0.9;
5. looks for an aggregation (`aggregate.propose_aggregation`): with an amount, a date and a
   name rule, whether a clear share of sampled records of one side equal exact sums of 2-5
   same-name records of the other within a month; if so an `aggregation:` entry is proposed
   (and a RANGE rule for the amounts if the one-to-one evidence fell short of one).

The rule set is named ``ai:<source stem>-vs-<target stem>``, its description lists the
evidence (scores per mapping and per rule), and it is returned as `parse_rule_set` reads it
back, so it is exactly what gets stored.
"""

from __future__ import annotations

from pipelines.reconcile.proposal.constants import DATE_RANGE_OVERLAP as DATE_RANGE_OVERLAP
from pipelines.reconcile.proposal.constants import DATE_TOLERANCE_DAYS as DATE_TOLERANCE_DAYS
from pipelines.reconcile.proposal.constants import EXACT_OVERLAP as EXACT_OVERLAP
from pipelines.reconcile.proposal.constants import FUZZY_SHARE as FUZZY_SHARE
from pipelines.reconcile.proposal.constants import FUZZY_SOURCE_SAMPLE as FUZZY_SOURCE_SAMPLE
from pipelines.reconcile.proposal.constants import FUZZY_TARGET_SAMPLE as FUZZY_TARGET_SAMPLE
from pipelines.reconcile.proposal.constants import FUZZY_THRESHOLD as FUZZY_THRESHOLD
from pipelines.reconcile.proposal.constants import ID_DISTINCT_RATIO as ID_DISTINCT_RATIO
from pipelines.reconcile.proposal.constants import LOW_CARDINALITY as LOW_CARDINALITY
from pipelines.reconcile.proposal.constants import MATCH_THRESHOLD as MATCH_THRESHOLD
from pipelines.reconcile.proposal.constants import MIN_SCORE as MIN_SCORE
from pipelines.reconcile.proposal.constants import NAME_WEIGHT as NAME_WEIGHT
from pipelines.reconcile.proposal.constants import NUMBER_EVIDENCE as NUMBER_EVIDENCE
from pipelines.reconcile.proposal.constants import SAMPLE_SIZE as SAMPLE_SIZE
from pipelines.reconcile.proposal.constants import SEED as SEED
from pipelines.reconcile.proposal.names import name_words
from pipelines.reconcile.proposal.propose import propose_from_frames, propose_rule_set

__all__ = ["name_words", "propose_from_frames", "propose_rule_set"]
