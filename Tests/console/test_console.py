#!/usr/bin/env python3
"""The web console in a real headless Chromium (selenium + Debian's chromedriver) against a real controller.

usage: test_console.py TRELLIS_BINARY SCREENSHOT_DIRECTORY

Starts its own controller (SQLite, loopback, plain HTTP) with two enterprises, logs in as a tenant and as the
admin, and checks what a person would: the login refuses a bad token; a tenant sees its own enterprise and
nothing of the other; a change made elsewhere appears without a reload; an endpoint's page shows its profile
and changing the profile there changes it in the API; explain gives the API's verdict; a bad policy rule is
refused with its field named and changes nothing; markup in a description stays text; no script error.
Prints the delay of a change reaching the page against the API round trip measured in the same run.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

failures: list[str] = []


def check(condition: bool, message: str) -> None:
    print(("ok   " if condition else "FAIL ") + message, flush=True)
    if not condition:
        failures.append(message)


class Controller:
    """A controller of its own on a free loopback port, stopped (by PID) when the test ends."""

    def __init__(self, binary: str) -> None:
        self.directory = tempfile.mkdtemp(prefix="trellis-console-")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(self.directory, "controller.log"), "w")
        self.process = subprocess.Popen(
            [binary, "controller", "--listen", f"127.0.0.1:{self.port}", "--store", f"sqlite:{self.directory}/t.db",
             "--admin-token-file", f"{self.directory}/admin.token", "--insecure-http"],
            stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        with open(f"{self.directory}/admin.token") as file:
            self.admin = file.read().strip()

    def call(self, method: str, path: str, body=None, token: str | None = None):
        request = urllib.request.Request(self.url + path, method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"Bearer {token or self.admin}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read()
                return response.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def must(self, method: str, path: str, body=None):
        status, answer = self.call(method, path, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {answer}")
        return answer

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def seed(controller: Controller) -> str:
    """Two enterprises with the same subnet names; returns the token of acme's user alice."""
    for enterprise in ("acme", "globex"):
        controller.must("POST", "/api/v1/enterprises", {"name": enterprise})
        controller.must("POST", "/api/v1/domains", {"enterprise": enterprise, "name": "app"})
        controller.must("POST", "/api/v1/zones", {"domain": f"{enterprise}/app", "name": "web"})
        controller.must("POST", "/api/v1/zones", {"domain": f"{enterprise}/app", "name": "db"})
        controller.must("POST", "/api/v1/subnets", {"zone": f"{enterprise}/app/web", "name": "red", "cidr": "10.1.0.0/24"})
        controller.must("POST", "/api/v1/subnets", {"zone": f"{enterprise}/app/db", "name": "blue", "cidr": "10.2.0.0/24"})
    controller.must("PUT", "/api/v1/hosts/h1", {"underlayIP": "10.255.0.2"})
    controller.must("PUT", "/api/v1/hosts/h2", {"underlayIP": "10.255.0.3"})
    controller.must("POST", "/api/v1/profiles", {"enterprise": "acme", "name": "web", "rules": ["allow tcp port 80", "deny tcp port 22"],
                                                 "ingressRate": {"bitsPerSecond": 10_000_000}})
    controller.must("POST", "/api/v1/profiles", {"enterprise": "acme", "name": "locked", "rules": ["deny any"]})
    controller.must("POST", "/api/v1/endpoints", {"subnet": "acme/app/web/red", "name": "web1", "host": "h1", "profile": "acme/web"})
    controller.must("POST", "/api/v1/endpoints", {"subnet": "acme/app/web/red", "name": "web2", "host": "h2"})
    controller.must("POST", "/api/v1/endpoints", {"subnet": "acme/app/db/blue", "name": "db1", "host": "h2"})
    controller.must("POST", "/api/v1/endpoints", {"subnet": "globex/app/web/red", "name": "globex-secret", "host": "h1"})
    controller.must("POST", "/api/v1/policies", {"domain": "acme/app", "name": "web-to-db",
                                                 "rules": ["allow tcp from acme/app/web to acme/app/db/blue port 5432"]})
    controller.must("POST", "/api/v1/policies", {"domain": "globex/app", "name": "globex-policy", "rules": ["allow any"]})
    controller.must("PATCH", "/api/v1/enterprises/acme", {"description": "<img src=x id=injected>"})
    return controller.must("POST", "/api/v1/users", {"name": "alice", "enterprise": "acme"})["token"]


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def wait(driver, condition, seconds: float = 10):
    return WebDriverWait(driver, seconds, poll_frequency=0.02, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda _: condition())


def log_in(driver, controller: Controller, token: str) -> None:
    driver.get(f"{controller.url}/ui")
    field = wait(driver, lambda: driver.find_element(By.ID, "token"))
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()


def chips(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('a.endpoint')].map((chip) => chip.dataset.endpoint)")


def main() -> int:
    binary, screenshots = sys.argv[1], sys.argv[2]
    os.makedirs(screenshots, exist_ok=True)
    controller = Controller(binary)
    driver = None
    try:
        alice = seed(controller)
        driver = browser()

        # A bad token is refused on the form, and nothing else is shown.
        log_in(driver, controller, "trl_not-a-token")
        message = wait(driver, lambda: driver.find_element(By.ID, "login-error").text)
        check("does not accept" in message, f"a bad token is refused: {message!r}")
        check(driver.find_element(By.ID, "nav").get_attribute("hidden") is not None, "nothing but the login form is shown")

        # The tenant sees its own enterprise, and nothing at all of the other one.
        driver.find_element(By.ID, "token").clear()
        driver.find_element(By.ID, "token").send_keys(alice)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        wait(driver, lambda: "acme/app/web/red/web1" in chips(driver))
        driver.save_screenshot(f"{screenshots}/topology-tenant.png")
        check(set(chips(driver)) == {"acme/app/web/red/web1", "acme/app/web/red/web2", "acme/app/db/blue/db1"},
              f"alice sees acme's three endpoints: {chips(driver)}")
        check("globex" not in driver.page_source, "nothing of globex is in the page")
        check(driver.find_element(By.ID, "nav-hosts").get_attribute("hidden") is not None, "a tenant has no hosts page")
        graph = driver.find_elements(By.CSS_SELECTOR, "svg.policy-graph .rule.allow")
        check(len(graph) == 1, f"the policy graph draws acme's one rule: {len(graph)}")
        check(not driver.find_elements(By.ID, "injected") and "<img src=x id=injected>" in driver.find_element(By.TAG_NAME, "main").text,
              "markup in a description is shown as text, never as markup")

        # A change made elsewhere appears without a reload; its delay is set against the API round trip.
        rounds, delays = [], []
        for index in range(5):
            started = time.monotonic()
            controller.must("POST", "/api/v1/endpoints", {"subnet": "acme/app/web/red", "name": f"live{index}", "host": "h1"})
            made = time.monotonic()
            wait(driver, lambda: f"acme/app/web/red/live{index}" in chips(driver))
            rounds.append(made - started)
            delays.append(time.monotonic() - started)
        check(True, f"changes appear live: median {sorted(delays)[2] * 1000:.0f} ms from the request "
                    f"(API round trip {sorted(rounds)[2] * 1000:.0f} ms, ratio {sorted(delays)[2] / sorted(rounds)[2]:.1f}; "
                    "the page reloads its lists on each change)")
        controller.must("DELETE", "/api/v1/endpoints/acme/app/web/red/live0")
        wait(driver, lambda: "acme/app/web/red/live0" not in chips(driver))
        check(True, "a deleted endpoint leaves the page without a reload")

        # The search narrows the topology.
        driver.find_element(By.ID, "search").send_keys("db1")
        wait(driver, lambda: chips(driver) == ["acme/app/db/blue/db1"])
        check(True, "searching for db1 leaves only db1")
        driver.find_element(By.ID, "search").clear()
        driver.find_element(By.ID, "search").send_keys(" ")

        # An endpoint's page shows its profile; choosing another changes it in the API.
        web1 = controller.must("GET", "/api/v1/endpoints/acme/app/web/red/web1")
        driver.get(f"{controller.url}/ui#/endpoint/{web1['id']}")
        wait(driver, lambda: driver.find_element(By.ID, "profile"))
        text = driver.find_element(By.TAG_NAME, "main").text
        check(web1["ip"] in text and "allow tcp ingress port 80" in text and "10 Mbit/s" in text,
              "the endpoint page shows its address, its profile's rules and rate")
        check("web-to-db #1 allow tcp from acme/app/web" in text, "the policy naming web1's zone is listed for it")
        Select(driver.find_element(By.ID, "profile")).select_by_visible_text("locked")
        wait(driver, lambda: controller.must("GET", f"/api/v1/endpoints/{web1['id']}").get("profile") == "acme/locked")
        wait(driver, lambda: "deny any ingress" in driver.find_element(By.TAG_NAME, "main").text)
        check(True, "choosing profile locked on the page changes web1's profile in the API")
        driver.save_screenshot(f"{screenshots}/endpoint.png")

        # Explain gives what the API gives.
        db1 = controller.must("GET", "/api/v1/endpoints/acme/app/db/blue/db1")
        driver.get(f"{controller.url}/ui#/explain")
        wait(driver, lambda: driver.find_element(By.ID, "explain-from")).send_keys("acme/app/web/red/web2")
        driver.find_element(By.ID, "explain-to").send_keys(db1["ip"])
        driver.find_element(By.ID, "explain-port").send_keys("5432")
        driver.find_element(By.CSS_SELECTOR, "form.explain button").click()
        verdict = wait(driver, lambda: driver.find_element(By.ID, "verdict").text)
        expected = controller.must("GET", f"/api/v1/explain?from=acme/app/web/red/web2&to={db1['ip']}&protocol=tcp&port=5432")
        rows = driver.find_elements(By.CSS_SELECTOR, "table.steps tr")
        check(verdict == ("allowed" if expected["verdict"] == "allow" else "dropped") and len(rows) == len(expected["steps"]) + 1,
              f"explain shows the API's verdict ({expected['verdict']}) and its {len(expected['steps'])} steps: {verdict}")
        check("web-to-db" in driver.find_element(By.ID, "explanation").text, "the deciding policy is named")
        driver.save_screenshot(f"{screenshots}/explain.png")

        # A rule added on the policies page is in the API; a bad one is refused with its field and changes nothing.
        driver.get(f"{controller.url}/ui#/policies")
        box = wait(driver, lambda: driver.find_element(By.CSS_SELECTOR, "[data-policy='acme/app/web-to-db'] form input"))
        box.send_keys("allow udp from acme/app/web to acme/app/db port 53")
        box.submit()
        wait(driver, lambda: len(controller.must("GET", "/api/v1/policies/acme/app/web-to-db")["rules"]) == 2)
        check(True, "a rule added on the page is in the policy")
        box = wait(driver, lambda: driver.find_element(By.CSS_SELECTOR, "[data-policy='acme/app/web-to-db'] form input"))
        box.send_keys("allow tcp from acme/app/web to acme/app/db port 99999")
        box.submit()
        toast = wait(driver, lambda: driver.find_element(By.ID, "toast").text)
        check("rules[2]" in toast, f"a bad rule is refused naming its field: {toast!r}")
        check(len(controller.must("GET", "/api/v1/policies/acme/app/web-to-db")["rules"]) == 2, "the refused rule changed nothing")
        driver.find_element(By.CSS_SELECTOR, "[data-policy='acme/app/web-to-db'] li button.remove").click()
        wait(driver, lambda: len(controller.must("GET", "/api/v1/policies/acme/app/web-to-db")["rules"]) == 1)
        check(True, "a rule removed on the page leaves the policy")

        # The events page lists the tenant's changes, not the other tenant's.
        driver.get(f"{controller.url}/ui#/events")
        wait(driver, lambda: driver.find_elements(By.CSS_SELECTOR, "#events tr.created"))
        events = driver.find_element(By.ID, "events").text
        check("acme/app/web/red/live4" in events and "globex" not in events, "events show acme's changes and none of globex")

        # Logging out forgets the token.
        driver.find_element(By.ID, "logout").click()
        wait(driver, lambda: driver.find_element(By.ID, "token"))
        check(driver.execute_script("return sessionStorage.getItem('trellis.token')") is None, "logging out forgets the token")

        # The admin sees both enterprises and the hosts.
        log_in(driver, controller, controller.admin)
        wait(driver, lambda: "globex/app/web/red/globex-secret" in chips(driver))
        driver.get(f"{controller.url}/ui#/hosts")
        hosts = wait(driver, lambda: driver.find_element(By.ID, "hosts").text)
        check("h1" in hosts and "h2" in hosts and "10.255.0.3" in hosts, "the admin's hosts page lists h1 and h2")
        driver.save_screenshot(f"{screenshots}/hosts.png")

        # No script error, no refused script or style: only the API's deliberate 4xx answers are logged.
        def deliberate(message: str) -> bool:
            return "Failed to load resource" in message and any(f" {code} " in message for code in (400, 401, 403, 404))
        errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE" and not deliberate(entry["message"])]
        check(not errors, f"no error in the browser's console: {errors}")
    finally:
        if driver is not None:
            driver.quit()
        controller.stop()
    print(f"{len(failures)} failed" if failures else "console: every check passed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
