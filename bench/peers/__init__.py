"""The other crawlers the benchmark runs beside ours, each as a subprocess.

* ``scrapy_spider.py``: Scrapy 2.x with its own link extraction (``scrapy runspider``).
* ``plain.py``: the plain pattern: requests + ThreadPoolExecutor + BeautifulSoup + sqlite3.

Both are scripts run by path, not imported by the bench (Scrapy is an optional extra).
"""
