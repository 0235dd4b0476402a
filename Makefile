# Everything a fresh machine needs: `make demo` and `make test` install into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fp32 lint bench models paper clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install torch==2.14.1 torchvision==0.29.1 || $(BIN)/python -m pip install torch torchvision
	$(BIN)/python -m pip install -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/colorizer demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The tests that train models or hold their output to a tolerance, once more on the float32 path and
# the AVX2 kernels of a CPU without AVX-512 or bf16, whatever this machine has (CI runs both).
NUMERICS_TESTS = tests/test_models.py tests/test_hints.py tests/test_train.py tests/test_infer.py \
	tests/test_evaluate.py tests/test_loss.py tests/test_decode.py tests/test_device.py
test-fp32: $(STAMP)
	COLORIZER_BF16=0 ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 $(BIN)/python -m pytest -q $(NUMERICS_TESTS)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/targets.py
	$(BIN)/python bench/infer.py
	$(BIN)/python bench/models.py
	$(BIN)/python bench/onnx_parity.py
	$(BIN)/python bench/train_step.py
	$(BIN)/python bench/demo.py
	$(BIN)/python bench/hints.py
	$(BIN)/python bench/study_load.py

clean:
	rm -rf $(VENV) build *.egg-info

# The bundled models: trained on ../shared/data/<set>/train on a 2-core CPU, one at a time (docs/models.md).
# Both use random-scale crops and no weight decay (which erodes the pretrained encoder at this learning
# rate). dogs trains at the working size with lambda 0.2, trading AuC for rebalanced AuC. generic trains
# on broad and ImageNet photos at half each, with colour hints, in two stages: 10 epochs with lambda 0.3,
# then 7 with hint propagation added (fading over 40 cells), hints on three photos in four, half of those
# recoloured, ImageNet photos at 60 %, and the paper's lambda of 0.5.
DATA ?= ../shared/data
TRAIN_FLAGS = --preset effnet-lite0 --amp bf16 --input-size 160 \
	--batch-size 32 --epochs 12 --lr 1e-3 --workers 1 --seed 0 --min-chroma 3
GENERIC_BASE_FLAGS = --options '{"frozen_stages": 2, "hint_inputs": true}' --epochs 10 --data-share 0.5 0.5 --epoch-size 16000 \
	--holdout 0.05 --image-size 128 --min-crop-area 0.35 --weight-decay 0 --mix 0.3 --time-limit 85
# then trained on with hint propagation added and the paper's lambda
GENERIC_FLAGS = --options '{"frozen_stages": 2, "hint_inputs": true, "hint_propagation": true, "propagation_reach": 40}' \
	--init runs/generic-base --epochs 7 --lr 3e-4 --hinted-share 0.75 --recolour-share 0.5 --data-share 0.4 0.6 \
	--epoch-size 16000 --holdout 0.05 --image-size 128 --min-crop-area 0.35 --weight-decay 0 --mix 0.5 --time-limit 40
DOGS_FLAGS = --options '{"frozen_stages": 2}' --image-size 160 --min-crop-area 0.35 --weight-decay 0 --mix 0.2 \
	--time-limit 55
# Long CPU trainings slow down by a quarter under glibc's allocator; under jemalloc that never hands
# memory back to the system they do not, with the same results (docs/models.md). Used where installed.
comma := ,
JEMALLOC := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 /usr/lib/aarch64-linux-gnu/libjemalloc.so.2))
TRAIN_ENV := $(if $(JEMALLOC),LD_PRELOAD=$(JEMALLOC) MALLOC_CONF=dirty_decay_ms:-1$(comma)muzzy_decay_ms:-1)

models: $(STAMP)
	$(TRAIN_ENV) $(BIN)/colorizer train --data $(DATA)/broad/train $(DATA)/generic/train $(TRAIN_FLAGS) $(GENERIC_BASE_FLAGS) \
	  --out runs/generic-base
	$(TRAIN_ENV) $(BIN)/colorizer train --data $(DATA)/broad/train $(DATA)/generic/train $(TRAIN_FLAGS) $(GENERIC_FLAGS) --out runs/generic
	$(TRAIN_ENV) $(BIN)/colorizer train --data $(DATA)/dogs/train --val $(DATA)/dogs/val $(TRAIN_FLAGS) $(DOGS_FLAGS) --out runs/dogs
	$(BIN)/python -m colorizer.bundle runs/generic runs/dogs

# broad/val rows of docs/samples.png: a portrait, a child outdoors, a street, a room
SAMPLE_PHOTOS = $(addprefix $(DATA)/broad/val/,kodak/877eb8_kodim04.jpg flickr8k/158d8c_1363924449_487f0733df.jpg \
	sun80/737478_street_sun_bkgpqbvgorkjqzgp.jpg sun80/08b08c_youth_hostel_sun_bggjirgsdnqewgwp.jpg)
# Every table and figure of docs/: evaluation, table 2, samples, and the vote figures of VOTES_DB
# (default: a study prepared from dogs/val with simulated votes, labelled as simulated wherever it appears).
VOTES_DB ?= sqlite:///paper/simulated.db
STUDY ?= simulated-demo
paper: $(STAMP)
	mkdir -p paper docs/eval docs/figures
	for m in generic dogs; do for s in generic dogs broad; do \
	  hints=$$( [ $$m = generic ] && [ $$s != dogs ] && echo "--hints 0,10,100" ); \
	  $(BIN)/colorizer eval --model $$m --data $(DATA)/$$s/val $$hints --json docs/eval/eval_$${m}_on_$$s.json || exit 1; done; done
	for s in generic dogs broad; do \
	  $(BIN)/colorizer analyze classify --models dogs generic --data $(DATA)/$$s/val --out paper/classify_$$s || exit 1; done
	$(BIN)/colorizer analyze samples --models generic dogs --data $(DATA)/dogs/val $(DATA)/generic/val $(SAMPLE_PHOTOS) \
	  --rows 10 --size 128 --out docs/samples.png
	$(BIN)/colorizer analyze hints --cases docs/figures/hints_cases.json --data $(DATA) --out docs/figures/hints.png
	if [ "$(VOTES_DB)" = "sqlite:///paper/simulated.db" ]; then \
	  rm -rf paper/simulated.db* paper/media && \
	  $(BIN)/colorizer study prepare --name $(STUDY) --models dogs generic --images $(DATA)/dogs/val --n 30 --seed 1 \
	    --db $(VOTES_DB) --media paper/media && \
	  $(BIN)/colorizer analyze simulate --db $(VOTES_DB) --study $(STUDY) || exit 1; fi
	$(BIN)/colorizer analyze votes --db $(VOTES_DB) --study $(STUDY) --out paper/votes
	cp paper/votes/figure2_votes_per_image.png docs/figures/figure2_simulated.png
