"""The Sequences page: sequential latent-variable models (VRNN, SRNN, the Gaussian HMM) and the particle
filters that score them. Three tabs, each one handler, testable without a browser:

    sequences_music.sample_pianoroll(store, model, data, index, prefix, steps, count, seed)
        continue a test pianoroll N times, play it, and show the true continuation's bound per frame
    sequences_particles.filter_particles(store, proposal, particles, threshold, seed, steps, filter_seed)
        a particle filter on the GHMM: particles sized by weight, the ESS, the resamplings, the surviving
        lineages, over the exact posterior (Kalman smoother); hovering a particle lights its ancestors in the browser
    sequences_bounds.bounds_vs_particles(store, proposal, seed, steps, runs, threshold)
        ELBO, IWAE and FIVO against the number of particles, with the exact log p(x)

The GHMM needs no training: its exact proposals (prior, filtering, smoothing) are built on the spot,
and a GHMM checkpoint in the app's folders adds its learned proposal.
"""

from __future__ import annotations

from functools import partial

import gradio as gr

from core.data.pianorolls import DATASETS
from core.model_store import ModelStore
from pages.model_picker import model_picker
from pages.sequences_bounds import MAX_RUNS, bounds_vs_particles
from pages.sequences_filter import MAX_PARTICLES, MAX_SEED
from pages.sequences_filter import MAX_STEPS as MAX_FILTER_STEPS
from pages.sequences_filter import MIN_STEPS as MIN_FILTER_STEPS
from pages.sequences_models import UNTRAINED, ghmm_choices, music_models, music_summary, trained_on
from pages.sequences_music import (
    MAX_CONTINUATIONS,
    MAX_PREFIX,
    MAX_STEPS,
    SAMPLE_RATE,
    SECONDS_PER_STEP,
    sample_pianoroll,
)
from pages.sequences_particles import filter_particles
from pages.sequences_particles_svg import LINEAGE_CSS, LINEAGE_JS

PROPOSAL_INFO = ("how particles are drawn: the prior ignores x; filtering sees xₜ; smoothing sees xₜ … x_T "
                 "(with it every particle's whole weight is p(x)); learned: a GHMM checkpoint's trained proposal")


def build(store: ModelStore) -> None:
    """Lay out the Sequences page inside the current Blocks context and wire its events."""
    gr.Markdown("## Sequences\nModels with a hidden state that is *sampled* at every step (VRNN, SRNN, a Gaussian "
                "hidden Markov model) cannot compute log p(x) exactly; a particle filter estimates it. Continue "
                "music with them, watch a filter at work, and compare the bounds it gives.")
    with gr.Tab("Music"):
        _music_tab(store)
    with gr.Tab("Particles"):
        _particles_tab(store)
    with gr.Tab("Bounds"):
        _bounds_tab(store)


def _music_tab(store: ModelStore) -> None:
    gr.Markdown("Pick a test sequence the model never saw and how much of it the model hears (the prefix); it "
                "continues it N times. Each continuation is drawn from the model's prior after its proposal has "
                "filtered the prefix.")
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            model = model_picker(store, music_models, lambda entry: music_summary(entry, len(music_models(store)) - 1))
            data = gr.Dropdown(list(DATASETS), value="jsb", label="data set")
            index = gr.Number(0, precision=0, minimum=0, label="test sequence", info="its index in the test split")
            prefix = gr.Slider(0, MAX_PREFIX, value=16, step=1, label="prefix length (frames)")
            steps = gr.Slider(1, MAX_STEPS, value=32, step=1, label="frames to continue",
                              info="fewer if the test sequence ends sooner")
            count = gr.Slider(1, MAX_CONTINUATIONS, value=2, step=1, label="continuations N")
            seed = gr.Number(0, precision=0, minimum=0, label="seed", info="blank = random")
            sample = gr.Button("Sample", variant="primary")
        with gr.Column(scale=2):
            status = gr.Markdown()
            rolls = gr.Plot(label="pianorolls (grey: prefix; green: the truth; blue: samples)")
            gr.Markdown("Each row is one continuation of the same prefix; the dashed line is where the model "
                        "stops listening and starts composing.")
            bound = gr.Plot(label="log-likelihood bound per frame of the true sequence")
            gr.Markdown("Bars: each frame's share of the FIVO bound on log p(x) of the *true* sequence (16 particles), "
                        "from the filter's log-weights — the growth of its running log p̂(x₁..ₜ). Their sum over the "
                        "shaded continuation estimates log p(continuation | prefix). Dotted: every key an independent "
                        "coin at its training frequency, the floor a sequence model must beat.")
    gr.Markdown(f"Audio: each key a sine at its pitch, {SECONDS_PER_STEP} s per frame, {SAMPLE_RATE // 1000} kHz.")
    with gr.Row():
        truth = gr.Audio(label="the truth: prefix + true continuation", interactive=False, elem_id="truth-audio")
        slots = [gr.Audio(label=f"sample {i + 1}", interactive=False) for i in range(MAX_CONTINUATIONS)]
    midi = gr.File(label="MIDI (the truth, then each sample)", file_count="multiple", interactive=False)

    def guess_data(path: str | None, current: str) -> str:
        entry = next((m for m in music_models(store) if m["path"] == path), None)
        return (trained_on(entry["config"]) if entry and entry["path"] != UNTRAINED else None) or current

    model.change(guess_data, [model, data], data, api_visibility="private")
    sample.click(partial(sample_pianoroll, store), [model, data, index, prefix, steps, count, seed],
                 [rolls, bound, status, truth, *slots, midi], api_name="sample_pianoroll")


def _proposal_dropdown(store: ModelStore, value: str) -> gr.Dropdown:
    """The proposal chooser, re-listed (a GHMM checkpoint trained meanwhile appears) on every visit."""
    proposal = gr.Dropdown(ghmm_choices(store), value=value, label="proposal", info=PROPOSAL_INFO,
                           allow_custom_value=True)  # a GHMM checkpoint saved after the app started
    gr.on(None, lambda current: gr.Dropdown(choices=ghmm_choices(store), value=current), proposal, proposal,
          api_visibility="private", show_progress="hidden")  # inputs on page load only
    return proposal


def _particles_tab(store: ModelStore) -> None:
    gr.Markdown("A 1-D Gaussian hidden Markov model, zₜ = zₜ₋₁ + noise, xₜ = zₜ + noise (variance 0.1 each): "
                "its exact posterior is known (Kalman smoother), so you can watch how well N particles track it. "
                "Each step every particle moves by the proposal and is weighed by how well it explains xₜ; when "
                "the weights grow too uneven the filter resamples, copying heavy particles and dropping light ones.")
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            proposal = _proposal_dropdown(store, "prior")
            particles = gr.Slider(1, MAX_PARTICLES, value=32, step=1, label="particles N")
            threshold = gr.Slider(0, 1, value=0.5, step=0.05, label="resampling threshold",
                                  info="resample when ESS ≤ threshold × N: 0 never (IWAE), 1 every step")
            seed = gr.Slider(0, MAX_SEED, value=0, step=1, label="sequence seed", info="which sequence the GHMM draws")
            steps = gr.Slider(MIN_FILTER_STEPS, MAX_FILTER_STEPS, value=25, step=1, label="steps T")
            filter_seed = gr.Number(0, precision=0, minimum=0, label="filter seed", info="blank = random")
            run = gr.Button("Filter", variant="primary")
        with gr.Column(scale=2):
            status = gr.Markdown()
            cloud = gr.HTML(label="particles over time", elem_id="particles-svg",
                            css_template=LINEAGE_CSS, js_on_load=LINEAGE_JS)
            gr.Markdown("Dots: the particles after each step's proposal, their area the weight resampling draws "
                        "with. Red lines: the ancestry of the particles alive at the end — they merge going back, as "
                        "each resampling (dashed line) copies some particles and drops others. Grey band: the exact "
                        "posterior mean ±2σ of z given all of x (the line: its mean; dotted: the true z); orange "
                        "crosses: the observations. Hover any particle to light its own ancestors back to step 0.")
            ess = gr.Plot(label="effective sample size")
            gr.Markdown("The ESS, 1 / Σ w², counts how many particles really carry weight (N when all weigh the "
                        "same, 1 when one holds it all). It falls as the weights spread; the filter resamples "
                        "(circled) when it drops to the threshold, and the next step's fresh weights start it high "
                        "again.")
    run.click(partial(filter_particles, store), [proposal, particles, threshold, seed, steps, filter_seed],
              [cloud, ess, status], api_name="filter_particles")


def _bounds_tab(store: ModelStore) -> None:
    gr.Markdown("Three lower bounds on log p(x) from the same particle filter: the **ELBO** (one particle, here "
                "averaged over K), **IWAE** (K particles, never resampled) and **FIVO** (K particles, resampled when "
                "the ESS falls). More particles tighten IWAE and FIVO toward the exact log p(x); on long sequences "
                "IWAE's weights degenerate and FIVO's resampling wins.")
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            proposal = _proposal_dropdown(store, "filtering")
            seed = gr.Slider(0, MAX_SEED, value=0, step=1, label="sequence seed", info="which sequence the GHMM draws")
            steps = gr.Slider(MIN_FILTER_STEPS, MAX_FILTER_STEPS, value=20, step=1, label="steps T")
            runs = gr.Slider(1, MAX_RUNS, value=16, step=1, label="runs R per point",
                             info="repeated runs give the mean and the error bars (±1 sd)")
            threshold = gr.Slider(0, 1, value=0.5, step=0.05, label="FIVO's resampling threshold")
            compare = gr.Button("Compare bounds", variant="primary")
        with gr.Column(scale=2):
            figure = gr.Plot(label="bounds against the number of particles")
            gr.Markdown("Each point: the mean over R runs of the bound, bars ±1 standard deviation; dashed: the "
                        "exact log p(x). A tighter bound sits closer to the line; its spread is what training by "
                        "that bound would feel.")
            table = gr.Markdown()
    compare.click(partial(bounds_vs_particles, store), [proposal, seed, steps, runs, threshold], [figure, table],
                  api_name="bounds_vs_particles")
