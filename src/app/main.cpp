// opd entry point (placeholder until app/ lands).
int main() { return 0; }
