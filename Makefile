.PHONY: demo test bench

# Start the whole system (listener, web, worker) with demo data: http://127.0.0.1:8000
demo:
	python -m pip install -q -r requirements.txt
	python manage.py demo

# Run the whole test suite (what CI runs)
test:
	bash scripts/test.sh -q

bench:
	python bench/run.py
