"""Scrapy peer: ``scrapy runspider scrapy_spider.py -a seed_file=SEEDS -a hosts=H1,H2 -o OUT``.

Links are followed with Scrapy's own ``LinkExtractor``, restricted to the site's hosts; one item
per page (url, status, title) goes to the feed. Concurrency, robots and delay come from ``-s``
settings on the command line (see ``bench.measure.scrapy_command``).
"""

from __future__ import annotations

from typing import Any

from scrapy.http import Response
from scrapy.linkextractors import LinkExtractor
from scrapy.spiders import CrawlSpider, Rule


class BenchSpider(CrawlSpider):
    name = "bench"

    def __init__(self, seed_file: str, hosts: str, *args: Any, **kwargs: Any) -> None:
        domains = [h for h in hosts.split(",") if h]
        self.allowed_domains = domains
        with open(seed_file) as f:
            self.start_urls = [line.strip() for line in f if line.strip()]
        # Restricted to the hosts by ``allowed_domains`` (the offsite filter compares host
        # names); LinkExtractor(allow_domains=...) compares host:port and so matches nothing here.
        self.rules = (Rule(LinkExtractor(), callback="parse_item", follow=True),)
        super().__init__(*args, **kwargs)

    def parse_start_url(self, response: Response, **kwargs: Any) -> Any:
        return self.parse_item(response)

    def parse_item(self, response: Response) -> Any:
        yield {
            "url": response.url,
            "status": response.status,
            "title": response.css("title::text").get(),
        }
