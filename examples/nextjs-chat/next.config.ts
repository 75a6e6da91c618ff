import type { NextConfig } from "next";

const nextConfig: NextConfig = {
  // Rooms are live: nothing here is prerendered or cached between requests.
  poweredByHeader: false,
  reactStrictMode: true,
  async redirects() {
    return [{ source: "/", destination: "/rooms/lobby", permanent: false }];
  },
};

export default nextConfig;
