#!/usr/bin/env bash
# The hostile inputs of issue 13 ("nothing lost, nothing leaked, nothing unbounded"), each one
# real `tuner` process in a scratch folder: prints a Markdown table of the exit code, the
# seconds and the first line of stderr. `bash benchmarks/hostile_cases.sh` (about 2 minutes).
# The tests (tests/test_limits.py, test_stores.py, test_secrets.py, test_fuzz.py,
# test_trial_failures.py) check the same classes; this is the table for people.
set -u
W=$(mktemp -d); cd "$W"
base='name: h
data: {source: digits, val_fraction: 0.2, test_fraction: 0.2, seed: 0}
objective: {metric: accuracy}
training: {max_epochs: 2}
study: {strategy: random, trials: 2, pruner: none}
'
row() { local name=$1; shift; local t0=$(date +%s.%N); "$@" >out.txt 2>err.txt; local rc=$?; local t1=$(date +%s.%N)
  printf '| %s | %s | %.1f s | %s |\n' "$name" "$rc" "$(echo "$t1 - $t0" | bc)" "$(grep -v '^\s*$' err.txt | head -1 | cut -c1-150)"; }
echo "| case | exit | time | first line of stderr |"; echo "| --- | --- | --- | --- |"
printf '%sparams:\n  lr: {type: float, low: 0.001, high: 0.1}\n  momentum: {type: float, low: 0.1, high: 0.9}\n  dropout: {type: float, low: 0, high: 0.5}\n  units: {type: int, low: 1, high: 65536}\n' "$base" > grid.yaml
sed -i 's/pruner: none}/pruner: none, grid_points: 32}/' grid.yaml
row "four parameters at grid_points: 32 (2^20 points), tuner run --strategy grid" tuner run grid.yaml --strategy grid --no-tracking
row "same grid, tuner validate" tuner validate grid.yaml
python - <<'PY'
lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"] + [f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]" for i in range(1, 10)]
open("bomb.yaml", "w").write("\n".join(lines) + "\nname: bomb\n")
open("deep.yaml", "w").write("name: " + "[" * 5000 + "]" * 5000 + "\n")
open("big.yaml", "w").write("name: big\n# " + "x" * (50 * 2**20) + "\n")
PY
row "YAML alias bomb (a few hundred bytes)" tuner run bomb.yaml --no-tracking
row "5000 nested brackets" tuner run deep.yaml --no-tracking
row "50 MB space file" tuner run big.yaml --no-tracking
printf '%sparams:\n  lr: {type: float, low: 0.001, high: 0.1, log: true}\n' "$base" > ok.yaml
tuner run ok.yaml --storage torn.journal --no-tracking --quiet >/dev/null 2>&1
printf '{"op_code": 4, "worker_id": "x", "stud' >> torn.journal
row "journal with a torn last record, next tuner run" tuner run ok.yaml --storage torn.journal --no-tracking --quiet --trials 3
mkdir race && cd race && cp ../ok.yaml . && { t0=$(date +%s.%N); tuner run ok.yaml --storage sqlite:///study.db --quiet --no-model >o1 2>e1 & tuner run ok.yaml --storage sqlite:///study.db --quiet --no-model >o2 2>e2; r2=$?; wait %1; r1=$?; t1=$(date +%s.%N)
  printf '| two tuner run at once in an empty folder (SQLite study + mlflow.db) | %s and %s | %.1f s | %s |\n' "$r1" "$r2" "$(echo "$t1 - $t0" | bc)" "$(cat e1 e2 | grep -v '^\s*$' | head -1 | cut -c1-150)"; }; cd ..
row "unreachable HTTP tracking server (password in URI)" tuner run ok.yaml --tracking-uri http://bob:SECRET@127.0.0.1:9 --storage u.journal
row "PostgreSQL tracking URI on a dead port" tuner run ok.yaml --tracking-uri postgresql://postgres:SECRET@127.0.0.1:9/x --storage p.journal
row "a tracking URI scheme MLflow has no store for (was: exit 1 at the first MLflow call)" tuner run ok.yaml --tracking-uri bogus://bob:SECRET@host/x --storage b.journal
row "tuner compare --jobs 2 on a SQLite study storage" tuner compare ok.yaml --jobs 2 --storage sqlite:///jobs.db --quiet
row "--debug with a password in the tracking URI" tuner --debug run ok.yaml --tracking-uri http://bob:SECRET@127.0.0.1:9 --storage d.journal
printf 'root:x:0:0:root:/root:/bin/bash\n' > passwd.csv
sed 's/source: digits/source: csv, path: passwd.csv, target: y, task: classification/' ok.yaml > nontable.yaml
row "a non-table data file (a passwd line)" tuner run nontable.yaml --no-tracking
printf '%sparams:\n  n_layers: 16\n  units: {type: categorical, choices: [8, 65536]}\n' "$base" > wide.yaml
row "16 layers of 8 or 65,536 units (grid of 2; was: RSS to 24 GB, OOM-killed at 103 s)" /usr/bin/time -f "max RSS %M KB" tuner run wide.yaml --strategy grid --no-tracking --quiet
row "--study ../../x" tuner run ok.yaml --study ../../x --no-tracking
printf '%sparams:\n  n_layers: {type: int, low: 1, high: 2}\n  activation: {type: categorical, choices: [relu, tanh]}\n  units: {type: int, low: 8, high: 16, per_layer: activation}\n' "$base" > perlayer.yaml
row "per_layer naming a categorical" tuner run perlayer.yaml --no-tracking
printf '%sparams:\n  n_layers: {type: int, low: 1, high: 2}\n  optimizer: {type: categorical, choices: [adam, sgd]}\n  units: {type: int, low: 8, high: 16, per_layer: n_layers, when: {optimizer: sgd}}\n' "$base" > perwhen.yaml
row "per_layer combined with when:" tuner run perwhen.yaml --no-tracking
python -c "
import numpy as np; rng=np.random.default_rng(0); x=rng.normal(size=(60,3)); x[5,1]=np.inf
open('inf.csv','w').write('a,b,c,y\n'+'\n'.join(f'{r[0]},{r[1]},{r[2]},{i%2}' for i,r in enumerate(x)))"
sed 's/source: digits/source: csv, path: inf.csv, target: y, task: classification/' ok.yaml > inf.yaml
row "inf in a CSV feature" tuner run inf.yaml --no-tracking
printf 'def train(params, reporter):\n    if params["w"] == 2:\n        raise KeyError("missing_feature")\n    reporter.report(1, {"val_score": params["w"] / 10})\n    return {"val_score": params["w"] / 10}\n' > flaky.py
printf 'name: flaky\nmodel: custom\ntrainer: flaky.py:train\nobjective: {metric: score, direction: maximize}\ntraining: {max_epochs: 1}\nstudy: {strategy: grid, trials: 3, pruner: none}\nparams:\n  w: {type: categorical, choices: [1, 2, 3]}\n' > flaky.yaml
row "a custom trainer that raises on one trial (grid of 3)" tuner run flaky.yaml --no-tracking --json
echo "(stdout of the last: $(python -c "import json; d=json.load(open('out.txt')); print(d.get('n_complete'), 'complete,', d.get('n_failed'), 'failed')" 2>&1))"
sed -i 's/if params\["w"\] == 2:/if True:/' flaky.py
row "a custom trainer whose every trial raises" tuner run flaky.yaml --no-tracking --study all-fail
